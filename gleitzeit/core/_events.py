"""State-change events: what the engine reports to stores and listeners.

One event per state change. Durable stores persist them (a journal line each);
replaying a workflow's events in order rebuilds its state
(:class:`gleitzeit._stores._state.StoredRun`).
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ._models import Workflow

__all__ = ["Event", "EventKind"]


class EventKind(enum.StrEnum):
    """What changed."""

    WORKFLOW_SUBMITTED = "workflow_submitted"  # carries the full definition
    WORKFLOW_STARTED = "workflow_started"
    TASK_STARTED = "task_started"
    TASK_COMPLETED = "task_completed"  # carries the result
    TASK_FAILED = "task_failed"  # carries the error (error_to_dict)
    TASK_SKIPPED = "task_skipped"
    TASK_CANCELLED = "task_cancelled"
    WORKFLOW_FINISHED = "workflow_finished"  # carries the final status (and error)


@attrs.frozen(kw_only=True)
class Event:
    """One state change of a workflow or one of its tasks."""

    kind: EventKind
    workflow_id: str
    at: float
    task_id: str | None = None
    attempt: int = 0
    result: dict[str, Any] | None = attrs.field(default=None, repr=False)
    error: dict[str, Any] | None = attrs.field(default=None, repr=False)
    status: str | None = None
    workflow: Workflow | None = attrs.field(default=None, repr=False)
    #: When the attempt that completed or failed started (task_completed and
    #: task_failed events); with ``at`` it gives the attempt's duration.
    started_at: float | None = None


attrs.resolve_types(Event)  # before __module__ changes where names are looked up
Event.__module__ = EventKind.__module__ = "gleitzeit"
