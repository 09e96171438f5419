"""The ``memory`` store: state lives in this process only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.lowlevel

from ..core._events import EventKind
from . import LOCAL
from ._state import StoredRun, apply_event

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..core._events import Event
    from ..core._models import Workflow
    from . import LocalCoordinator

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps every workflow's state in a dict; nothing survives the process.

    The engine sends it workflow events only (``task_events = False``): the
    client keeps every run of a memory-backed session, with its task states
    and results, so per-task copies here would only cost time. Fed task
    events (as :func:`gleitzeit.testing.check_store` does), it applies them.
    """

    name = "memory"
    ordered = False
    task_events = False
    shares_runs = False

    def __init__(self, max_finished: int | None = None) -> None:
        """``max_finished``: most finished workflows kept (oldest dropped first)."""
        self._runs: dict[str, StoredRun] = {}
        self._max_finished = max_finished
        self._finished: dict[str, None] = {}  # finished ids, oldest first

    def __repr__(self) -> str:
        return f"<MemoryStore workflows={len(self._runs)}>"

    async def open(self) -> None:
        """Nothing to open."""
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Nothing to close."""
        await anyio.lowlevel.checkpoint()

    async def record(self, events: Sequence[Event]) -> None:
        """Apply the events to the in-memory state."""
        runs = self._runs
        for event in events:
            apply_event(runs, event)
            if event.kind is EventKind.WORKFLOW_FINISHED and self._max_finished is not None:
                finished = self._finished
                finished.pop(event.workflow_id, None)
                finished[event.workflow_id] = None
                while len(finished) > self._max_finished:
                    oldest = next(iter(finished))
                    del finished[oldest]
                    runs.pop(oldest, None)
        await anyio.lowlevel.checkpoint()

    async def load(self, workflow_id: str) -> StoredRun | None:
        """The state of one workflow, or None."""
        await anyio.lowlevel.checkpoint()
        return self._runs.get(workflow_id)

    def coordinate(self, workflow: Workflow) -> LocalCoordinator:
        """This process runs every task itself: every claim is granted."""
        return LOCAL

    def run_lock(self, workflow_id: str) -> None:
        """None: no other process can open this store while this one has it."""
        return None

    async def list_runs(self, limit: int) -> list[StoredRun]:
        """Newest first."""
        await anyio.lowlevel.checkpoint()
        runs = sorted(self._runs.values(), key=lambda r: r.created_at, reverse=True)
        return runs[:limit]
