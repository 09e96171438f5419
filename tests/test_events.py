"""Progress events: every state change reaches `on_event`, in order, on every store."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Literal

import pytest

from gleitzeit import Event, EventKind, GleitzeitClient, SyncGleitzeitClient, TaskError
from gleitzeit._serde import event_from_record

Isolation = Literal["inline", "process"]

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


FLAKY = (
    "import pathlib\n"
    "p = pathlib.Path(args['folder'], 'tries')\n"
    "n = int(p.read_text()) + 1 if p.exists() else 1\n"
    "p.write_text(str(n))\n"
    "if n < 3:\n"
    "    raise RuntimeError('try again')\n"
    "result = n\n"
)


def _per_task(seen: Sequence[Event]) -> dict[str, list[tuple[str, int, str | None]]]:
    out: dict[str, list[tuple[str, int, str | None]]] = {}
    for e in seen:
        if e.task_id is not None:
            out.setdefault(e.task_id, []).append((e.kind.value, e.attempt, e.status))
    return out


@pytest.mark.parametrize("isolation", ["inline", "process"])
@pytest.mark.parametrize("persistence", ["memory", "journal", "sqlite"])
async def test_every_state_change_reaches_the_listener(
    tmp_path: Path, persistence: str, isolation: Isolation
) -> None:
    """Submitted, started; per attempt one start and one end (skips included); finished."""
    seen: list[Event] = []
    flaky = {
        "name": "flaky",
        "method": "python/execute",
        "params": {"code": FLAKY, "args": {"folder": str(tmp_path)}},
        "retry": {"max_attempts": 3, "base_delay": 0.01, "jitter": False},
    }
    workflow = {**WORKFLOW, "tasks": [*WORKFLOW["tasks"], flaky]}
    db = tmp_path / ("j.jsonl" if persistence == "journal" else "g.db")
    async with GleitzeitClient(
        persistence=persistence, db_path=db, isolation=isolation, on_event=seen.extend
    ) as c:
        with pytest.raises(TaskError):
            await c.run_workflow(workflow)
    kinds = [e.kind for e in seen]
    assert kinds[:2] == [EventKind.WORKFLOW_SUBMITTED, EventKind.WORKFLOW_STARTED]
    assert kinds[-1] is EventKind.WORKFLOW_FINISHED
    assert seen[-1].status == "failed"
    assert _per_task(seen) == {
        "ok": [("task_started", 1, None), ("task_completed", 1, None)],
        "bad": [("task_started", 1, None), ("task_failed", 1, None)],
        "after": [("task_skipped", 0, None)],
        "flaky": [
            ("task_started", 1, None),
            ("task_failed", 1, "retrying"),
            ("task_started", 2, None),
            ("task_failed", 2, "retrying"),
            ("task_started", 3, None),
            ("task_completed", 3, None),
        ],
    }
    assert {e.workflow_id for e in seen} == {seen[0].workflow_id}
    if persistence == "journal":
        # The journal holds every event but the listener-only ones: inline
        # starts and the failures of attempts that are retried.
        lines = (tmp_path / "j.jsonl").read_text().splitlines()
        stored = [
            e.kind.value
            for e in seen
            if e.status != "retrying"
            and not (
                e.kind is EventKind.TASK_STARTED and isolation == "inline" and e.task_id != "flaky"
            )
        ]
        kinds = [event_from_record(json.loads(line)).kind for line in lines]
        assert kinds == stored


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


async def test_a_process_task_start_reaches_the_listener_while_it_runs(tmp_path: Path) -> None:
    """The listener hears of a start at once: the task waits for the listener's reply."""
    flag = tmp_path / "seen"
    code = (
        "import pathlib, time\n"
        f"flag = pathlib.Path({str(flag)!r})\n"
        "deadline = time.monotonic() + 20\n"
        "while not flag.exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "result = flag.exists()\n"
    )

    def listener(events: Sequence[Event]) -> None:
        if any(e.kind is EventKind.TASK_STARTED and e.task_id == "waits" for e in events):
            flag.touch()

    wf = {
        "name": "w",
        "tasks": [{"name": "waits", "method": "python/execute", "params": {"code": code}}],
    }
    async with GleitzeitClient(persistence="memory", on_event=listener) as c:
        results = await c.run_workflow(wf)
    assert results["waits"]["result"] is True
