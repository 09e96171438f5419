"""Child process of test_interrupt.py: runs a sqlite workflow until Ctrl-C.

Usage: python -m tests.interrupt_child MODE DB_PATH PIDS_FILE
MODE is ``asyncio``, ``trio`` or ``sync``. The workflow's first task finishes
at once; the second starts a ``sleep`` child, writes its own and the child's
pid to PIDS_FILE, then waits forever (unless PIDS_FILE.resume exists: then it
returns ``"resumed"``). The test sends SIGINT once that file
exists and checks what was recorded.
"""

from __future__ import annotations

import sys
from typing import Any

WORKFLOW_ID = "interrupted"


def workflow(pids_file: str) -> dict[str, Any]:
    """Two tasks: ``quick`` completes, ``slow`` hangs until interrupted."""
    slow = (
        "import os, subprocess, time\n"
        f"if os.path.exists({pids_file!r} + '.resume'):\n"
        "    result = 'resumed'\n"
        "else:\n"
        "  child = subprocess.Popen(['sleep', '300'])\n"
        f"  with open({pids_file!r} + '.tmp', 'w') as f:\n"
        "      f.write(f'{os.getpid()} {child.pid}')\n"
        f"  os.rename({pids_file!r} + '.tmp', {pids_file!r})\n"
        "  while True:\n"
        "      time.sleep(1)\n"
    )
    return {
        "name": "interrupt me",
        "id": WORKFLOW_ID,
        "tasks": [
            {"id": "quick", "method": "python/execute", "params": {"code": "result = 42"}},
            {
                "id": "slow",
                "method": "python/execute",
                "params": {"code": slow, "timeout": 600},
                "dependencies": ["quick"],
            },
        ],
    }


def main(mode: str, db_path: str, pids_file: str) -> None:
    """Run the workflow in the given mode; Ctrl-C ends it."""
    if mode == "sync":
        from gleitzeit import SyncGleitzeitClient

        with SyncGleitzeitClient(persistence="sqlite", db_path=db_path) as client:
            client.run_workflow(workflow(pids_file))
        return

    from gleitzeit import GleitzeitClient

    async def run() -> None:
        async with GleitzeitClient(persistence="sqlite", db_path=db_path) as client:
            await client.run_workflow(workflow(pids_file))

    if mode == "asyncio":
        import asyncio

        asyncio.run(run())
    else:
        import trio

        trio.run(run)


if __name__ == "__main__":
    main(*sys.argv[1:4])
