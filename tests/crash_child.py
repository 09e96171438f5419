"""Child process of test_crash.py: runs a workflow on a durable store until killed.

Usage: python -m tests.crash_child PERSISTENCE DB_PATH SIDE_EFFECT_FILE
Prints "running" once the workflow is submitted, then runs it to the end.
"""

from __future__ import annotations

import sys
from typing import Any

import trio

from gleitzeit import GleitzeitClient

WORKFLOW_ID = "crash-test"


def crash_workflow(side_file: str, n: int = 60) -> dict[str, Any]:
    """A layered DAG whose tasks append their id to a file and sum their inputs."""
    tasks = []
    for i in range(n):
        deps = [f"t{j}" for j in (i - 7, i - 3) if j >= 0]
        total = " + ".join(f"${{{d}.result}}" for d in deps) or "0"
        code = (
            "import os, time\n"
            f"fd = os.open({side_file!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
            f"os.write(fd, b't{i}\\n')\n"
            "os.close(fd)\n"
            "time.sleep(0.004)\n"
            f"result = {total} + {i}\n"
        )
        tasks.append(
            {
                "id": f"t{i}",
                "method": "python/execute",
                "params": {"code": code},
                "dependencies": deps,
            }
        )
    return {"name": "crash", "id": WORKFLOW_ID, "tasks": tasks}


async def main(persistence: str, db_path: str, side_file: str) -> None:
    async with GleitzeitClient(
        persistence=persistence, db_path=db_path, isolation="inline", max_concurrent=4
    ) as client:
        wf = await client.run_workflow_async(crash_workflow(side_file))
        print("running", flush=True)
        await client.wait_for_workflow(wf.id)
        print("done", flush=True)


if __name__ == "__main__":
    persistence, db_path, side_file = sys.argv[1:4]
    trio.run(main, persistence, db_path, side_file)
