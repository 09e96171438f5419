"""Child process of test_batch.py: a python batch on sqlite that runs until killed.

Usage: python -m tests.batch_crash_child DB_PATH SCRIPT DATA_DIR
Prints the batch's workflow id once it is submitted, then runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from gleitzeit import EventKind, GleitzeitClient

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gleitzeit import Event


def _announce(events: Sequence[Event]) -> None:
    for event in events:
        if event.kind is EventKind.WORKFLOW_SUBMITTED:
            print(event.workflow_id, flush=True)


async def main(db_path: str, script: str, data_dir: str) -> None:
    files = sorted(str(p) for p in Path(data_dir).glob("*.csv"))
    async with GleitzeitClient(persistence="sqlite", db_path=db_path, on_event=_announce) as client:
        await client.batch_python(script, files, max_concurrent=2)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
