"""The python worker pool: grows with the tasks in flight, retires idle workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from gleitzeit import GleitzeitClient
from gleitzeit.core.errors import TaskTimeoutError

from .conftest import alive

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


def _rendezvous(folder: Path, n: int) -> str:
    """Code that checks in, then waits (up to 60 s) until ``n`` tasks have checked in.

    Its result is True only if all ``n`` were running at the same time: with
    a pool held below ``n`` workers, the first ones wait in vain.
    """
    return (
        "import os, time\n"
        f"folder = {str(folder)!r}\n"
        "open(os.path.join(folder, str(os.getpid())), 'w').close()\n"
        "deadline = time.monotonic() + 60\n"
        f"while len(os.listdir(folder)) < {n} and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        f"result = [len(os.listdir(folder)) >= {n}, os.getpid()]\n"
    )


def _workflow(code: str, n: int) -> dict[str, Any]:
    task = {"method": "python/execute", "params": {"code": code}}
    return {"name": "pool", "tasks": [{"id": f"t{i}", **task} for i in range(n)]}


async def test_pool_grows_past_the_cpu_count_up_to_the_tasks_in_flight(tmp_path: Path) -> None:
    """Four tasks that each wait for all four to run: on 2 CPUs they all run at once."""
    async with GleitzeitClient(persistence="memory", max_concurrent=4) as client:
        results = await client.run_workflow(_workflow(_rendezvous(tmp_path, 4), 4))
    assert all(results[f"t{i}"]["result"][0] for i in range(4))
    assert len({results[f"t{i}"]["result"][1] for i in range(4)}) == 4


async def test_workers_caps_the_pool(tmp_path: Path) -> None:
    """With workers=2, two rendezvous tasks meet; every task ran in one of two workers."""
    code = "import os\nresult = os.getpid()\n"
    (tmp_path / "met").mkdir()
    async with GleitzeitClient(persistence="memory", max_concurrent=8, workers=2) as client:
        met = await client.run_workflow(_workflow(_rendezvous(tmp_path / "met", 2), 2))
        results = await client.run_workflow(_workflow(code, 8))
    assert all(met[f"t{i}"]["result"][0] for i in range(2))
    assert len({r["result"] for r in results.values()}) <= 2


async def test_idle_workers_are_retired_keeping_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gleitzeit._providers.python.IDLE_RETIRE_SECONDS", 0.0)
    async with GleitzeitClient(persistence="memory", max_concurrent=3) as client:
        first = await client.run_workflow(_workflow(_rendezvous(tmp_path, 3), 3))
        pids = {r["result"][1] for r in first.values()}
        assert len(pids) == 3
        last = await client.run_workflow(_workflow("import os\nresult = os.getpid()\n", 1))
        kept = last["t0"]["result"]
        # The run's end retired every idle worker but the one kept warm.
        assert kept in pids
        assert [p for p in pids if alive(p)] == [kept]


async def test_short_tasks_share_a_few_workers() -> None:
    """Quick tasks with 64 in flight do not start a worker each: the pool grows
    only when tasks wait (up to the CPU count) or every worker is stuck."""
    code = "import os\nresult = os.getpid()\n"
    async with GleitzeitClient(persistence="memory", max_concurrent=64) as client:
        results = await client.run_workflow(_workflow(code, 500))
        alive_after = len(client._python.pool.pids)
    used = {r["result"] for r in results.values()}
    assert len(used) < 32
    assert alive_after < 32


async def test_a_task_waiting_for_a_killed_worker_gets_a_new_one() -> None:
    """workers=1: a runaway task times out and its worker is killed; the task
    queued behind it still runs (the pool starts a replacement)."""
    spin = {"code": "while True: pass", "timeout": 1}
    wf = {
        "name": "queued",
        "tasks": [
            {"id": "spin", "method": "python/execute", "params": spin},
            {"id": "next", "method": "python/execute", "params": {"code": "result = 2"}},
        ],
    }
    async with GleitzeitClient(persistence="memory", max_concurrent=2, workers=1) as client:
        with pytest.raises(TaskTimeoutError) as info:
            await client.run_workflow(wf)
    assert info.value.data["results"]["next"]["result"] == 2
