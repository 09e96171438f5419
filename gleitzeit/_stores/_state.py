"""A stored workflow's state, rebuilt by applying events in order.

Every store keeps (or rebuilds on open) one :class:`StoredRun` per workflow;
:func:`apply_event` is the single place that says how an event changes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import attrs

from ..core._events import Event, EventKind
from ..core._models import Workflow, WorkflowStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "EVENT_OF_STATUS",
    "STATUS_OF_EVENT",
    "AttemptTime",
    "CompletionRow",
    "Completions",
    "Record",
    "StoredRun",
    "apply_event",
    "apply_record",
    "as_events",
    "count_events",
    "snapshot_events",
]

#: The task status each task event leads to, and back.
STATUS_OF_EVENT: dict[EventKind, str] = {
    EventKind.TASK_STARTED: "running",
    EventKind.TASK_COMPLETED: "completed",
    EventKind.TASK_FAILED: "failed",
    EventKind.TASK_SKIPPED: "skipped",
    EventKind.TASK_CANCELLED: "cancelled",
}
EVENT_OF_STATUS: dict[str, EventKind] = {v: k for k, v in STATUS_OF_EVENT.items()}


class AttemptTime(NamedTuple):
    """When a task's recorded attempt ran: ``(start, end, status, attempt)``.

    ``end`` is None while it runs; ``attempt`` counts from 1 (0: unknown), so
    ``attempt - 1`` earlier attempts of the task failed and were retried.
    """

    start: float
    end: float | None
    status: str
    attempt: int


#: One completed attempt: ``(task_id, attempt, started_at, result)``.
CompletionRow: TypeAlias = "tuple[str, int, float | None, dict[str, Any]]"


class Completions(NamedTuple):
    """Task completions of one workflow at one moment, without an :class:`Event` each.

    The engine stages a step's completions as one of these for the durable
    stores (``record_step``); a store encodes it row by row. Applying it is
    applying, in order, one ``task_completed`` event per row (:meth:`events`):
    the replay rule is :func:`apply_event`'s.
    """

    workflow_id: str
    at: float
    rows: list[CompletionRow]

    def events(self) -> list[Event]:
        """The same completions as events."""
        wid, at = self.workflow_id, self.at
        return [
            Event(
                kind=EventKind.TASK_COMPLETED,
                workflow_id=wid,
                at=at,
                task_id=task_id,
                attempt=attempt,
                started_at=started,
                result=result,
            )
            for task_id, attempt, started, result in self.rows
        ]


#: What a store records: an event, or a step's completions.
Record: TypeAlias = "Event | Completions"


def as_events(records: Iterable[Record]) -> list[Event]:
    """``records`` as events, completions expanded (in order)."""
    out: list[Event] = []
    for record in records:
        if isinstance(record, Completions):
            out.extend(record.events())
        else:
            out.append(record)
    return out


def count_events(records: Sequence[Record]) -> int:
    """How many events ``records`` stand for."""
    return sum(len(r.rows) if isinstance(r, Completions) else 1 for r in records)


@attrs.define(eq=False)
class StoredRun:
    """What a store knows about one workflow.

    ``task_status`` holds only tasks that left ``pending``; ``results`` only
    completed tasks; ``errors`` only failed ones (as :func:`error_to_dict`).
    ``task_times`` holds, per task whose start is known, its recorded
    attempts as :class:`AttemptTime` (today the latest one: attempts retried
    within a run are reported to ``on_event`` listeners, not stored).
    """

    workflow: Workflow
    status: WorkflowStatus = WorkflowStatus.PENDING
    task_status: dict[str, str] = attrs.Factory(dict)
    results: dict[str, dict[str, Any]] = attrs.Factory(dict)
    errors: dict[str, dict[str, Any]] = attrs.Factory(dict)
    error: dict[str, Any] | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    task_times: dict[str, list[AttemptTime]] = attrs.Factory(dict)

    def __repr__(self) -> str:
        return (
            f"<StoredRun {self.workflow.id} {self.workflow.name!r} {self.status} "
            f"results={len(self.results)}/{self.workflow.total_tasks}>"
        )


def apply_event(runs: dict[str, StoredRun], event: Event) -> None:
    """Apply one event to the runs it concerns (events of unknown workflows are ignored).

    This is the replay rule of every store: sqlite's SQL and Redis's Lua
    script do the same (tests hold each store against this function).
    """
    kind = event.kind
    if kind is EventKind.WORKFLOW_SUBMITTED:
        assert event.workflow is not None
        runs[event.workflow_id] = StoredRun(event.workflow, created_at=event.at)
        return
    run = runs.get(event.workflow_id)
    if run is None:
        return
    task_id = event.task_id
    status = STATUS_OF_EVENT.get(kind)
    if status is not None:
        assert task_id is not None
        # A recorded completion is final (until the workflow is submitted
        # again): a late event of another attempt never replaces it.
        if run.task_status.get(task_id) == "completed":
            return
        run.task_status[task_id] = status
        _time(run, event, task_id, status)
        if status == "completed":
            run.results[task_id] = event.result or {}
            run.errors.pop(task_id, None)
        elif status == "failed":
            run.errors[task_id] = event.error or {}
        else:  # a new attempt (or a skip or cancel) clears the last error
            run.errors.pop(task_id, None)
    elif kind is EventKind.WORKFLOW_STARTED:
        run.status = WorkflowStatus.RUNNING
        run.started_at = event.at
        run.finished_at = None
        run.error = None
        # A resumed run starts again: what was running or cancelled is pending now.
        for tid, previous in list(run.task_status.items()):
            if previous != "completed":
                del run.task_status[tid]
                run.errors.pop(tid, None)
                run.task_times.pop(tid, None)
    elif kind is EventKind.WORKFLOW_FINISHED:
        run.status = WorkflowStatus(event.status or "failed")
        run.finished_at = event.at
        run.error = event.error


def apply_record(runs: dict[str, StoredRun], record: Record) -> None:
    """Apply an event, or completions as :func:`apply_event` applies their events."""
    if not isinstance(record, Completions):
        apply_event(runs, record)
        return
    run = runs.get(record.workflow_id)
    if run is None:
        return
    # apply_event's completion branch, without building an Event per row.
    task_status, results, errors, times = run.task_status, run.results, run.errors, run.task_times
    at = record.at
    for task_id, attempt, started, result in record.rows:
        if task_status.get(task_id) == "completed":
            continue
        task_status[task_id] = "completed"
        previous = times.get(task_id)
        if started is None and previous:
            started = previous[-1].start
        if started is not None:
            if not attempt and previous:
                attempt = previous[-1].attempt
            times[task_id] = [AttemptTime(started, at, "completed", attempt)]
        results[task_id] = result or {}
        errors.pop(task_id, None)


def _time(run: StoredRun, event: Event, task_id: str, status: str) -> None:
    """Track when a task's attempt started and ended.

    A start comes from a ``task_started`` event (its ``at``) or from the
    ``started_at`` of a completion or failure; any other event of a started
    task keeps its start and ends it (sqlite does the same with
    ``coalesce``).
    """
    if status == "running":
        start: float | None = event.at
    else:
        start = event.started_at
    previous = run.task_times.get(task_id)
    if start is None and previous:
        start = previous[-1].start
    if start is None:
        return
    attempt = event.attempt or (previous[-1].attempt if previous else 0)
    end = None if status == "running" else event.at
    run.task_times[task_id] = [AttemptTime(start, end, status, attempt)]


def snapshot_events(run: StoredRun) -> list[Event]:
    """The shortest events that :func:`apply_event` turns back into ``run``.

    The inverse of the replay rule, used to compact a journal: replaying
    these events gives a run equal to ``run`` field by field (a property test
    holds the two functions together), and events recorded after the snapshot
    apply to it exactly as they would have to the full history.
    """
    wid = run.workflow.id
    events = [
        Event(
            kind=EventKind.WORKFLOW_SUBMITTED,
            workflow_id=wid,
            at=run.created_at,
            workflow=run.workflow,
        )
    ]
    if run.started_at is not None:
        events.append(Event(kind=EventKind.WORKFLOW_STARTED, workflow_id=wid, at=run.started_at))
    base = run.started_at if run.started_at is not None else run.created_at
    for task_id, status in run.task_status.items():
        at, started, attempt = base, None, 0
        times = run.task_times.get(task_id)
        if times:  # the attempt's times come back through _time
            started, end, _, attempt = times[-1]
            at = started if end is None else end
            if status not in ("completed", "failed", "running"):
                events.append(
                    Event(
                        kind=EventKind.TASK_STARTED,
                        workflow_id=wid,
                        task_id=task_id,
                        at=started,
                        attempt=attempt,
                    )
                )
        ends_attempt = status in ("completed", "failed")
        events.append(
            Event(
                kind=EVENT_OF_STATUS[status],
                workflow_id=wid,
                task_id=task_id,
                at=at,
                attempt=attempt,
                started_at=started if ends_attempt else None,
                result=run.results.get(task_id) if status == "completed" else None,
                error=run.errors.get(task_id) if status == "failed" else None,
            )
        )
    if run.finished_at is not None:
        events.append(
            Event(
                kind=EventKind.WORKFLOW_FINISHED,
                workflow_id=wid,
                at=run.finished_at,
                status=run.status.value,
                error=run.error,
            )
        )
    return events
