"""Ctrl-C in the program that runs a client: the run is recorded, nothing stays behind."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gleitzeit import SyncGleitzeitClient, WorkflowStatus

from .conftest import alive, hear_ctrl_c, wait_until
from .interrupt_child import WORKFLOW_ID

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mode", ["asyncio", "trio", "sync"])
def test_ctrl_c_records_the_run_cancelled_and_resumable(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "runs.db"
    pids_file = tmp_path / "pids"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.interrupt_child", mode, str(db), str(pids_file)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=hear_ctrl_c,
    )
    try:
        assert wait_until(pids_file.exists, 60), "the slow task never started"
        worker, grandchild = map(int, pids_file.read_text().split())
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # Ctrl-C leaves as KeyboardInterrupt (not an exception group), after the
    # workers and everything they started are gone.
    assert child.returncode != 0
    assert "KeyboardInterrupt" in stderr
    assert "ExceptionGroup" not in stderr, stderr
    assert not alive(worker), "the worker outlived the interrupted engine"
    assert not alive(grandchild), "the task's child outlived the interrupted engine"

    with SyncGleitzeitClient(persistence="sqlite", db_path=db) as client:
        status = client.get_workflow_status(WORKFLOW_ID)
        assert status is not None
        assert status.status is WorkflowStatus.CANCELLED
        quick = client.get_task_result(WORKFLOW_ID, "quick")
        assert quick is not None
        assert quick["result"] == 42
        assert client.get_task_result(WORKFLOW_ID, "slow") is None
        # Resumable: the completed task is reused, the interrupted one runs again.
        (tmp_path / "pids.resume").touch()
        results = client.resume_workflow(WORKFLOW_ID)
    assert results["quick"]["result"] == 42
    assert results["slow"]["result"] == "resumed"
