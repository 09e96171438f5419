"""The client's boundary: exceptions from the body leave the block as themselves."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from gleitzeit import GleitzeitClient, SyncGleitzeitClient
from gleitzeit.core.errors import TaskError, WorkflowError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

FAILING = {
    "name": "fails",
    "tasks": [
        {"name": "boom", "method": "python/execute", "params": {"code": "raise ValueError(1)"}}
    ],
}
INVALID = {"name": "invalid", "tasks": [{"name": "t", "method": "no/such"}]}


async def test_errors_leave_the_async_block_as_themselves() -> None:
    with pytest.raises(TaskError) as info:
        async with GleitzeitClient(persistence="memory", isolation="inline") as client:
            await client.run_workflow(FAILING)
    assert type(info.value) is TaskError
    with pytest.raises(WorkflowError):
        async with GleitzeitClient(persistence="memory") as client:
            await client.run_workflow(INVALID)
    with pytest.raises(KeyError, match="mine"):
        async with GleitzeitClient(persistence="memory") as client:
            raise KeyError("mine")


async def test_caller_can_catch_by_class_around_the_block() -> None:
    caught = None
    try:
        async with GleitzeitClient(persistence="memory") as client:
            await client.run_workflow(INVALID)
    except WorkflowError as exc:  # never an ExceptionGroup
        caught = exc
    assert caught is not None
    assert caught.data["problems"]


def test_errors_leave_the_sync_block_as_themselves() -> None:
    with (
        pytest.raises(TaskError) as info,
        SyncGleitzeitClient(persistence="memory", isolation="inline") as client,
    ):
        client.run_workflow(FAILING)
    assert type(info.value) is TaskError
    with pytest.raises(KeyError, match="mine"), SyncGleitzeitClient(persistence="memory"):
        raise KeyError("mine")


def test_example_script_prints_one_short_error(tmp_path: Path) -> None:
    """A script that lets a task failure escape shows that error, not a group."""
    script = tmp_path / "s.py"
    script.write_text(
        "from gleitzeit import SyncGleitzeitClient\n"
        f"wf = {FAILING!r}\n"
        "with SyncGleitzeitClient(persistence='memory') as c:\n"
        "    c.run_workflow(wf)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 1
    assert "ExceptionGroup" not in proc.stderr
    assert "nursery" not in proc.stderr.lower()
    assert "TaskError" in proc.stderr.splitlines()[-1]


@pytest.mark.trio
async def test_the_blocking_client_inside_trio_says_what_to_use() -> None:
    """Inside trio code the blocking client fails at once (it used to hang)."""
    from gleitzeit.core.errors import ErrorCode, GleitzeitError

    with pytest.raises(GleitzeitError) as info, SyncGleitzeitClient(persistence="memory"):
        pass  # pragma: no cover - never entered
    assert info.value.code == ErrorCode.SYSTEM_NOT_INITIALIZED
    assert "async with GleitzeitClient()" in info.value.message
