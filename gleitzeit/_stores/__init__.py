"""Stores: where workflow state is kept.

The engine writes through the small :class:`Store` interface: it hands over
batches of :class:`~gleitzeit.core._events.Event` and reads back
:class:`~gleitzeit._stores._state.StoredRun` records. A store with
``ordered = True`` promises that when :meth:`Store.record` returns, the
events are safe from a crash of this process; the engine then releases
dependents only after their dependencies' completions were recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from ._state import StoredRun, apply_event

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..core._events import Event
    from ..core._models import Workflow
    from ._owner import RunLock

__all__ = ["LOCAL", "Coordinator", "LocalCoordinator", "Store", "StoredRun", "apply_event"]


class Coordinator(Protocol):
    """One process's part in running one workflow.

    ``remote = False``: this process alone runs the workflow; every ready task
    is its to run (every claim granted) and no outcome comes from elsewhere,
    so the engine takes its ordinary path at full speed. ``remote = True``
    (:class:`~gleitzeit._stores.redis_share.RedisCoordinator`): ready tasks
    are claimed from a shared queue with a lease, outcomes are recorded
    there, and outcomes recorded by other processes are delivered into the
    engine's loop through the same path as local ones.
    """

    remote: bool


class LocalCoordinator:
    """The coordinator of stores that no other process runs workflows from."""

    remote = False

    def __repr__(self) -> str:
        return "<LocalCoordinator>"


#: The one local coordinator (it holds no state).
LOCAL: Final = LocalCoordinator()


class Store(Protocol):
    """The interface every store implements."""

    #: The persistence name (``memory``, ``journal``, ``sqlite``, ``redis``).
    name: str
    #: True if recorded events survive a crash of this process.
    ordered: bool
    #: False if the store keeps no per-task state (the memory store: the client
    #: keeps its runs itself); the engine then sends only workflow events.
    task_events: bool
    #: True if processes sharing the store execute one run together (redis).
    shares_runs: bool

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

    def coordinate(self, workflow: Workflow) -> Any:
        """This process's :class:`Coordinator` for a run of ``workflow``."""

    def run_lock(self, workflow_id: str) -> RunLock | None:
        """The lock that makes one process at a time run this workflow.

        None for stores that no other process can open at the same time.
        """
