"""Workers and everything they started die with the engine, even on SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from .conftest import alive, wait_until

if TYPE_CHECKING:
    from pathlib import Path


def test_sigkill_of_the_engine_kills_its_workers_and_their_children(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    task_code = (
        "import os, subprocess\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        f"with open({str(pids_file)!r} + '.tmp', 'w') as f:\n"
        "    f.write(f'{os.getpid()} {child.pid}')\n"
        f"os.rename({str(pids_file)!r} + '.tmp', {str(pids_file)!r})\n"
        "while True:\n"
        "    pass\n"
    )
    engine_code = (
        "from gleitzeit import SyncGleitzeitClient\n"
        f"code = {task_code!r}\n"
        "wf = {'name': 'spin', 'tasks': [{'name': 's', 'method': 'python/execute',\n"
        "      'params': {'code': code, 'timeout': 600}}]}\n"
        "with SyncGleitzeitClient(persistence='memory') as c:\n"
        "    c.run_workflow(wf)\n"
    )
    engine = subprocess.Popen([sys.executable, "-c", engine_code])
    try:
        assert wait_until(pids_file.exists, 60), "the task never started"
        worker, grandchild = map(int, pids_file.read_text().split())
        assert alive(worker)
        assert alive(grandchild)
        os.kill(engine.pid, signal.SIGKILL)
        engine.wait(timeout=30)
        assert wait_until(lambda: not alive(worker) and not alive(grandchild), 10), (
            "the worker or its child outlived the engine"
        )
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
