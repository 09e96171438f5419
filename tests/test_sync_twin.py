"""SyncGleitzeitClient: generated, in lockstep with GleitzeitClient, usable anywhere."""

from __future__ import annotations

import asyncio
import inspect
import logging
import subprocess
import sys
import threading
from typing import Any

import pytest

from gleitzeit import GleitzeitClient, SyncGleitzeitClient
from gleitzeit.core.errors import ErrorCode, GleitzeitError, TaskError

from .conftest import child_pids


def _public_coroutines(cls: type) -> dict[str, Any]:
    return {
        name: fn
        for name, fn in vars(cls).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(fn)
    }


def test_generated_file_is_up_to_date() -> None:
    """`python -m gleitzeit._tools.gen_sync --check` passes."""
    result = subprocess.run(
        [sys.executable, "-m", "gleitzeit._tools.gen_sync", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_coroutine_has_a_twin_with_the_same_signature() -> None:
    """Same public methods, parameters, defaults, return types; and the same constructor."""
    coroutines = _public_coroutines(GleitzeitClient)
    assert coroutines, "GleitzeitClient has no public coroutines?"
    twins = {
        name: fn
        for name, fn in vars(SyncGleitzeitClient).items()
        if not name.startswith("_") and callable(fn)
    }
    assert set(twins) == set(coroutines)
    for name, fn in coroutines.items():
        assert not inspect.iscoroutinefunction(twins[name]), name
        assert inspect.signature(twins[name]) == inspect.signature(fn), name
        assert inspect.getdoc(twins[name]) == inspect.getdoc(fn), name
    assert inspect.signature(SyncGleitzeitClient.__init__) == inspect.signature(
        GleitzeitClient.__init__
    )


WORKFLOW = {
    "name": "twin",
    "tasks": [
        {"name": "a", "method": "python/execute", "params": {"code": "result = 20"}},
        {"name": "b", "method": "python/execute", "params": {"code": "result = ${a.result} + 1"}},
    ],
}


def _use(client: SyncGleitzeitClient) -> int:
    results = client.run_workflow(WORKFLOW)
    return int(results["b"]["result"])


def test_plain_script_use() -> None:
    """From plain code: run a workflow, execute python, see errors with their codes."""
    with SyncGleitzeitClient(persistence="memory") as client:
        assert _use(client) == 21
        assert client.execute_python(code="import math; result = math.sqrt(16)")["result"] == 4.0
        with pytest.raises(TaskError) as info:
            client.execute_python(code="1/0")
        assert info.value.code == ErrorCode.TASK_EXECUTION_FAILED
        listed = client.list_workflows()
        assert listed[0].name == "twin"
    assert "state=closed" in repr(client)


def test_parallel_example_through_the_sync_client() -> None:
    """The seed's parallel example (python part) runs through the blocking twin."""
    from pathlib import Path

    with SyncGleitzeitClient(persistence="memory") as client:
        results = client.run_workflow(
            Path(__file__).parent / "fixtures" / "parallel_processing.yaml"
        )
    assert results["Merge_Data"]["result"]["count"] == 9


def test_from_a_thread() -> None:
    """Works when used from a worker thread."""
    out: list[int] = []

    def work() -> None:
        with SyncGleitzeitClient(persistence="memory") as client:
            out.append(_use(client))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert out == [21]


def test_inside_a_running_asyncio_loop() -> None:
    """Works from code running while an asyncio loop is active (a Jupyter cell)."""

    async def cell() -> int:
        with SyncGleitzeitClient(persistence="memory") as client:
            return _use(client)

    assert asyncio.run(cell()) == 21


def test_not_entered_and_no_leaks() -> None:
    """Calls outside `with` fail clearly; leaving `with` leaves no process behind."""
    before = child_pids()
    client = SyncGleitzeitClient(persistence="memory")
    with pytest.raises(GleitzeitError) as info:
        client.list_workflows()
    assert info.value.code == ErrorCode.SYSTEM_NOT_INITIALIZED
    with client:
        client.execute_python(code="result = 1")
    assert child_pids() - before == set()


def test_debug_logs_task_lifecycle(caplog: pytest.LogCaptureFixture) -> None:
    """debug=True logs task starts, finishes and substitution decisions."""
    caplog.set_level(logging.DEBUG, logger="gleitzeit")
    with SyncGleitzeitClient(persistence="memory", debug=True) as client:
        _use(client)
    text = caplog.text
    assert "task 'a' completed" in text
    assert "substituted references" in text
    logging.getLogger("gleitzeit").setLevel(logging.NOTSET)
