"""Journal compaction: safe at any time, through the client, during a live run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

from gleitzeit import GleitzeitClient, SyncGleitzeitClient, WorkflowStatus
from gleitzeit._stores.journal import JournalStore
from gleitzeit.core._events import Event, EventKind
from gleitzeit.core.errors import ConfigurationError, ErrorCode

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


def _layered(n: int) -> dict[str, Any]:
    """n inline tasks in layers of 50, each summing two tasks of the layer before."""
    tasks = []
    for i in range(n):
        deps = [f"t{j}" for j in (i - 50, i - 51) if j >= 0 and (j // 50) == (i // 50) - 1]
        code = "result = " + (" + ".join(f"${{{d}.result}}" for d in deps) or "1")
        tasks.append(
            {
                "id": f"t{i}",
                "method": "python/execute",
                "params": {"code": code},
                "dependencies": deps,
            }
        )
    return {"name": "big", "id": "big", "tasks": tasks}


async def test_compacting_during_a_live_run_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    compactions: list[dict[str, int]] = []
    async with GleitzeitClient(
        persistence="journal", db_path=path, isolation="inline", max_concurrent=8
    ) as client:
        wf = await client.run_workflow_async(_layered(3000))
        while (status := await client.get_workflow_status(wf.id)) is not None and (
            not status.status.is_final
        ):
            compactions.append(await client.compact_journal())
            await anyio.lowlevel.checkpoint()
        results = await client.wait_for_workflow(wf.id)
        compactions.append(await client.compact_journal())
    assert len(compactions) >= 2
    assert compactions[-1]["runs"] == 1
    assert compactions[-1]["bytes_after"] <= compactions[-1]["bytes_before"]
    assert len(results) == 3000

    # What a new process reads back: every result, the run completed.
    async with GleitzeitClient(persistence="journal", db_path=path) as again:
        stored = await again.get_workflow_status("big")
        assert stored is not None
        assert stored.status is WorkflowStatus.COMPLETED
        assert stored.completed_tasks == 3000
        for task_id in ("t0", "t1234", "t2999"):
            got = await again.get_task_result("big", task_id)
            assert got is not None
            assert got["result"] == results[task_id]["result"]


async def test_a_crashed_run_with_running_tasks_compacts_and_resumes(tmp_path: Path) -> None:
    """The state after a crash (tasks left 'running') compacts; resume still works."""
    path = tmp_path / "runs.jsonl"
    wf = _layered(3)
    async with GleitzeitClient(persistence="journal", db_path=path) as client:
        workflow = await client.create_workflow(wf["name"], wf["tasks"])
    store = JournalStore(path)
    await store.open()
    wid = workflow.id
    await store.record(
        [
            Event(kind=EventKind.WORKFLOW_SUBMITTED, workflow_id=wid, at=1.0, workflow=workflow),
            Event(kind=EventKind.WORKFLOW_STARTED, workflow_id=wid, at=2.0),
            Event(
                kind=EventKind.TASK_COMPLETED,
                workflow_id=wid,
                task_id="t0",
                at=3.0,
                result={"result": 7},
            ),
            Event(kind=EventKind.TASK_STARTED, workflow_id=wid, task_id="t1", at=3.0),
        ]
    )
    await store.aclose()  # as if the process died here

    async with GleitzeitClient(persistence="journal", db_path=path) as client:
        report = await client.compact_journal()
        assert report == {
            "runs": 1,
            "bytes_before": report["bytes_before"],
            "bytes_after": report["bytes_after"],
            "events_after": 4,
        }
        results = await client.resume_workflow(wid)
    assert results["t0"]["result"] == 7  # reused, not recomputed
    assert results["t1"]["result"] == 1


@pytest.mark.parametrize("persistence", ["memory", "sqlite"])
async def test_compact_journal_on_another_store_says_what_to_do(
    tmp_path: Path, persistence: str
) -> None:
    async with GleitzeitClient(persistence=persistence, db_path=tmp_path / "x.db") as client:
        with pytest.raises(ConfigurationError) as info:
            await client.compact_journal()
    assert info.value.code == ErrorCode.CONFIGURATION_ERROR
    assert "persistence='journal'" in info.value.message
    assert info.value.data["value"] == persistence


def test_the_blocking_client_compacts_too(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    with SyncGleitzeitClient(persistence="journal", db_path=path) as client:
        for _ in range(3):
            client.run_workflow(_layered(60))  # the same id three times: history to drop
        report = client.compact_journal()
    assert report["runs"] == 1
    assert report["bytes_after"] < report["bytes_before"] / 2
    assert path.stat().st_size == report["bytes_after"]
