"""Child process of test_owner.py: resumes the crash workflow, pausing at its first event.

Usage: python -m tests.resume_child DB_PATH GO_FILE
Prints "started" at the first progress event and waits there until GO_FILE
exists (so the test can try a second resume while this one owns the run),
then prints "done" or "refused: <message>".
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import trio

from gleitzeit import GleitzeitClient
from gleitzeit.core.errors import WorkflowError

from .crash_child import WORKFLOW_ID

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gleitzeit import Event


async def main(db_path: str, go_file: str) -> None:
    paused = False

    def pause_once(events: Sequence[Event]) -> None:
        nonlocal paused
        if not paused:
            paused = True
            print("started", flush=True)
            deadline = time.monotonic() + 60
            while not os.path.exists(go_file) and time.monotonic() < deadline:
                time.sleep(0.01)  # holds the run (and its lock) until the test says go

    async with GleitzeitClient(
        persistence="sqlite", db_path=db_path, isolation="inline", on_event=pause_once
    ) as client:
        try:
            await client.resume_workflow(WORKFLOW_ID)
        except WorkflowError as exc:
            print(f"refused: {exc}", flush=True)
        else:
            print("done", flush=True)


if __name__ == "__main__":
    persistence, db_path = sys.argv[1:3]
    trio.run(main, persistence, db_path)
