"""Progress events: every state change reaches `on_event`, in order, on every store."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from gleitzeit import Event, EventKind, GleitzeitClient, SyncGleitzeitClient, TaskError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

pytestmark = pytest.mark.anyio

WORKFLOW = {
    "name": "events",
    "tasks": [
        {"name": "ok", "method": "python/execute", "params": {"code": "result = 1"}},
        {"name": "bad", "method": "python/execute", "params": {"code": "raise ValueError('x')"}},
        {"name": "after", "method": "python/execute", "params": {"code": "result = ${bad.result}"}},
    ],
}


@pytest.mark.parametrize("persistence", ["memory", "journal"])
async def test_every_state_change_reaches_the_listener(tmp_path: Path, persistence: str) -> None:
    """Submitted, started, each task's outcome (skips included), finished — in order."""
    seen: list[Event] = []
    async with GleitzeitClient(
        persistence=persistence,
        db_path=tmp_path / "j.jsonl",
        isolation="inline",
        on_event=seen.extend,
    ) as c:
        with pytest.raises(TaskError):
            await c.run_workflow(WORKFLOW)
    kinds = [e.kind for e in seen]
    assert kinds[:2] == [EventKind.WORKFLOW_SUBMITTED, EventKind.WORKFLOW_STARTED]
    assert kinds[-1] is EventKind.WORKFLOW_FINISHED
    assert seen[-1].status == "failed"
    outcomes = {e.task_id: e.kind for e in seen if e.task_id is not None}
    assert outcomes == {
        "ok": EventKind.TASK_COMPLETED,
        "bad": EventKind.TASK_FAILED,
        "after": EventKind.TASK_SKIPPED,
    }
    assert {e.workflow_id for e in seen} == {seen[0].workflow_id}
    if persistence == "journal":  # the listener sees exactly what the journal holds
        lines = (tmp_path / "j.jsonl").read_text().splitlines()
        assert [json.loads(line)["kind"] for line in lines] == [k.value for k in kinds]


async def test_a_failing_listener_never_breaks_a_run(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in on_event is logged; the workflow still completes."""

    def broken(events: Sequence[Event]) -> None:
        raise RuntimeError("display crashed")

    wf: dict[str, Any] = {"name": "w", "tasks": [WORKFLOW["tasks"][0]]}
    with caplog.at_level(logging.ERROR, logger="gleitzeit"):
        async with GleitzeitClient(persistence="memory", isolation="inline", on_event=broken) as c:
            results = await c.run_workflow(wf)
    assert results["ok"]["result"] == 1
    assert "event listener failed" in caplog.text


def test_progress_through_the_sync_client() -> None:
    """The blocking twin passes on_event through; a progress count can be kept."""
    done: list[str] = []

    def progress(events: Sequence[Event]) -> None:
        done.extend(e.task_id or "" for e in events if e.kind is EventKind.TASK_COMPLETED)

    tasks = [
        {"name": f"t{i}", "method": "python/execute", "params": {"code": "result = 0"}}
        for i in range(20)
    ]
    with SyncGleitzeitClient(persistence="memory", isolation="inline", on_event=progress) as client:
        client.run_workflow({"name": "many", "tasks": tasks})
    assert sorted(done) == sorted(f"t{i}" for i in range(20))
