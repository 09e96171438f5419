"""One owner per live run: a second resume is refused while the first runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

from gleitzeit import GleitzeitClient
from gleitzeit.core.errors import ErrorCode, WorkflowError

from .crash_child import WORKFLOW_ID

ROOT = Path(__file__).resolve().parent.parent


def _kill_mid_run(db_path: Path, side: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", "sqlite", str(db_path), str(side)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "running"
    deadline = time.monotonic() + 30
    while (not side.exists() or len(side.read_text().split()) < 10) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.005)  # wait until some tasks ran
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()


def test_second_resume_is_refused_naming_the_owner_and_nothing_runs_twice(
    tmp_path: Path,
) -> None:
    db_path, side, go = tmp_path / "g.db", tmp_path / "side", tmp_path / "go"
    _kill_mid_run(db_path, side)
    ran_before = side.read_text().split()
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.resume_child", str(db_path), str(go)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "started"  # it owns the run now

        async def second() -> None:
            async with GleitzeitClient(persistence="sqlite", db_path=db_path) as client:
                await client.resume_workflow(WORKFLOW_ID)

        try:
            trio.run(second)
        except WorkflowError as exc:
            refused: WorkflowError | None = exc
        else:
            refused = None
        assert refused is not None, "a second resume of a live run must be refused"
        assert refused.code is ErrorCode.WORKFLOW_INVALID_STATE
        assert refused.data["owner"]["pid"] == first.pid
        assert f"process {first.pid}" in str(refused)
        go.touch()
        assert first.stdout.readline().strip() == "done"
    finally:
        go.touch()
        first.wait(timeout=60)
        assert first.stdout is not None
        first.stdout.close()
    runs = side.read_text().split()
    # A task cut off by the kill may run again (its completion was never
    # recorded), but the resumes never both run a task.
    resumed = runs[len(ran_before) :]
    assert len(resumed) == len(set(resumed)), "two resumes ran the same task"
    assert set(runs) == {f"t{i}" for i in range(60)}

    async def third() -> dict[str, object]:  # the owner is gone: taken at once
        async with GleitzeitClient(persistence="sqlite", db_path=db_path) as client:
            return await client.resume_workflow(WORKFLOW_ID)

    assert len(trio.run(third)) == 60
    assert side.read_text().split() == runs  # nothing ran again
