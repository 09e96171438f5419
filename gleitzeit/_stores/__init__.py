"""Stores: where workflow state is kept.

The engine writes through the small :class:`Store` interface: it hands over
batches of :class:`~gleitzeit.core._events.Event` and reads back
:class:`~gleitzeit._stores._state.StoredRun` records. A store with
``ordered = True`` promises that when :meth:`Store.record` returns, the
events are safe from a crash of this process; the engine then releases
dependents only after their dependencies' completions were recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ._state import StoredRun, apply_event

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..core._events import Event
    from ._owner import RunLock

__all__ = ["Store", "StoredRun", "apply_event"]


class Store(Protocol):
    """The interface every store implements."""

    #: The persistence name (``memory``, ``journal``, ``sqlite``, ``redis``).
    name: str
    #: True if recorded events survive a crash of this process.
    ordered: bool
    #: False if the store keeps no per-task state (the memory store: the client
    #: keeps its runs itself); the engine then sends only workflow events.
    task_events: bool

    async def open(self) -> None:
        """Connect / open files / replay; called once by the client."""

    async def aclose(self) -> None:
        """Flush and release everything."""

    async def record(self, events: Sequence[Event]) -> None:
        """Persist a batch of events, in order."""

    async def load(self, workflow_id: str) -> StoredRun | None:
        """The stored state of one workflow, or None."""

    async def list_runs(self, limit: int) -> list[StoredRun]:
        """The most recently submitted workflows, newest first."""

    def run_lock(self, workflow_id: str) -> RunLock | None:
        """The lock that makes one process at a time run this workflow.

        None for stores that no other process can open at the same time.
        """
