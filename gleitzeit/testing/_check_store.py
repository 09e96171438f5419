"""check_store: one battery of behaviour checks that every store must pass."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._loader import load_workflow
from .._stores._state import Completions
from ..core._events import Event, EventKind
from ..core._models import WorkflowStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._stores import Store
    from .._stores._state import CompletionRow

__all__ = ["check_store"]

_ODD_RESULT: dict[str, Any] = {
    "result": {"nested": [1, 2.5, None, True, "ünïcödé ✓", {"k": []}]},
    "stdout": 'line\nwith "quotes" and \\ backslash',
    "success": True,
}


def _workflow(name: str) -> Any:
    return load_workflow(
        {
            "name": name,
            "tasks": [
                {
                    "name": f"t{i}",
                    "method": "python/execute",
                    "params": {"code": f"result = {i}"},
                    "dependencies": [f"t{i - 1}"] if i else [],
                }
                for i in range(4)
            ],
        }
    )


async def check_store(make_store: Callable[[], Store], *, durable: bool) -> None:
    """Run the store battery; raises AssertionError naming the first broken rule.

    Args:
        make_store: Returns a new, unopened store; for a durable store every
            call must return one over the same underlying data.
        durable: Whether the data must survive closing and reopening.
    """

    def ev(kind: EventKind, wid: str, at: float, **kw: Any) -> Event:
        return Event(kind=kind, workflow_id=wid, at=at, **kw)

    store = make_store()
    await store.open()
    try:
        assert await store.load("missing") is None, "unknown ids load as None"
        assert await store.list_runs(10) == [], "a new store lists nothing"
        first, second = _workflow("first"), _workflow("second")
        await store.record([ev(EventKind.WORKFLOW_SUBMITTED, first.id, 1.0, workflow=first)])
        await store.record(
            [
                ev(EventKind.WORKFLOW_STARTED, first.id, 2.0),
                ev(EventKind.TASK_STARTED, first.id, 2.1, task_id="t0"),
                ev(
                    EventKind.TASK_COMPLETED,
                    first.id,
                    2.2,
                    task_id="t0",
                    attempt=1,
                    result=_ODD_RESULT,
                ),
                ev(
                    EventKind.TASK_FAILED,
                    first.id,
                    2.3,
                    task_id="t1",
                    attempt=2,
                    error={"type": "TaskError", "code": -29002, "message": "boom", "data": {}},
                ),
                ev(EventKind.TASK_SKIPPED, first.id, 2.4, task_id="t2"),
                ev(EventKind.TASK_SKIPPED, first.id, 2.4, task_id="t3"),
                ev(
                    EventKind.WORKFLOW_FINISHED,
                    first.id,
                    3.0,
                    status="failed",
                    error={"type": "TaskError", "code": -29002, "message": "boom", "data": {}},
                ),
            ]
        )
        await store.record(
            [
                ev(EventKind.WORKFLOW_SUBMITTED, second.id, 4.0, workflow=second),
                ev(EventKind.WORKFLOW_STARTED, second.id, 4.1),
                ev(EventKind.TASK_STARTED, second.id, 4.2, task_id="t0"),
            ]
        )
        await _check_contents(store, first.id, second.id, first)
    finally:
        await store.aclose()

    if durable:
        store = make_store()
        await store.open()
        try:
            await _check_contents(store, first.id, second.id, first)
            # A resumed run: failed/skipped/running tasks become pending again,
            # completed ones keep their results.
            await store.record([ev(EventKind.WORKFLOW_STARTED, first.id, 5.0)])
            again = await store.load(first.id)
            assert again is not None
            assert again.status is WorkflowStatus.RUNNING, "a restarted run is running"
            assert again.task_status == {"t0": "completed"}, again.task_status
            assert again.results == {"t0": _ODD_RESULT}
            assert again.errors == {}
            assert again.error is None
        finally:
            await store.aclose()

    if getattr(store, "record_step", None) is not None:
        await _check_steps(make_store, durable=durable)


async def _check_steps(make_store: Callable[[], Store], *, durable: bool) -> None:
    """A step's completions as :class:`Completions` rows (``record_step``)."""

    def ev(kind: EventKind, wid: str, at: float, **kw: Any) -> Event:
        return Event(kind=kind, workflow_id=wid, at=at, **kw)

    store: Any = make_store()
    await store.open()
    try:
        third = _workflow("third")
        await store.record([ev(EventKind.WORKFLOW_SUBMITTED, third.id, 6.0, workflow=third)])
        rows: list[CompletionRow] = [("t0", 1, 6.5, {"result": 0}), ("t1", 2, 6.6, _ODD_RESULT)]
        await store.record_step(
            [
                ev(EventKind.WORKFLOW_STARTED, third.id, 6.1),
                ev(EventKind.TASK_STARTED, third.id, 6.2, task_id="t1", attempt=2),
                Completions(third.id, 7.0, rows),
                ev(EventKind.TASK_SKIPPED, third.id, 7.0, task_id="t2"),
            ]
        )
        stepped = await store.load(third.id)
        assert stepped is not None, "a workflow recorded by steps loads"
        assert stepped.task_status == {"t0": "completed", "t1": "completed", "t2": "skipped"}
        assert stepped.results == {"t0": {"result": 0}, "t1": _ODD_RESULT}
        assert stepped.task_times["t0"] == [(6.5, 7.0, "completed", 1)], stepped.task_times
        assert stepped.task_times["t1"] == [(6.6, 7.0, "completed", 2)], stepped.task_times
        if durable:
            await store.aclose()
            store = make_store()
            await store.open()
            again = await store.load(third.id)
            assert again is not None
            assert (again.task_status, again.results, again.task_times) == (
                stepped.task_status,
                stepped.results,
                stepped.task_times,
            ), "steps survive reopening"
    finally:
        await store.aclose()


async def _check_contents(store: Store, first_id: str, second_id: str, first: Any) -> None:
    run = await store.load(first_id)
    assert run is not None, "a submitted workflow loads"
    assert run.workflow == first, "the definition round-trips"
    assert [t.params for t in run.workflow.tasks] == [t.params for t in first.tasks]
    assert run.status is WorkflowStatus.FAILED
    assert run.task_status == {
        "t0": "completed",
        "t1": "failed",
        "t2": "skipped",
        "t3": "skipped",
    }, run.task_status
    assert run.results == {"t0": _ODD_RESULT}, "results round-trip exactly"
    assert run.errors["t1"]["message"] == "boom"
    assert run.error is not None
    assert run.error["code"] == -29002
    assert (run.created_at, run.started_at, run.finished_at) == (1.0, 2.0, 3.0)
    listed = await store.list_runs(10)
    assert [r.workflow.id for r in listed] == [second_id, first_id], "newest first"
    assert [r.workflow.id for r in await store.list_runs(1)] == [second_id], "limit holds"
    running = await store.load(second_id)
    assert running is not None
    assert running.status is WorkflowStatus.RUNNING
    assert running.task_status == {"t0": "running"}
