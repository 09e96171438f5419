"""The scheduler: which task may start next. Pure state, no I/O, no clock.

Policy:

* A task is *ready* the moment its last dependency completes: every task keeps
  a counter of unfinished dependencies, and completing a task decrements the
  counters of its dependents (no levels, no scans, no polling). Total work is
  O(tasks + edges).
* Among ready tasks, higher ``priority`` first; ties go in document order
  (a heap of ``(-priority, index)``; a plain FIFO when all priorities are 0).
* A failed task's transitive dependents become ``skipped`` (they can only be
  pending: none of them could have started). Independent branches go on.
* ``cancel`` turns every task that is not final into ``cancelled``.

The engine asks :meth:`Scheduler.pop_ready` for work, reports outcomes with
:meth:`complete` / :meth:`fail`, and stops when :attr:`finished` is true.
Task state lives in flat lists indexed by task number; each task's dependents
are a run of one flat array (CSR), as the plan keeps them.
"""

from __future__ import annotations

import heapq
from array import array
from collections import deque
from itertools import accumulate
from operator import sub
from typing import TYPE_CHECKING, Final

from ._graph import invert

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ._plan import Plan

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "PENDING",
    "READY",
    "RUNNING",
    "SKIPPED",
    "STATE_NAMES",
    "Scheduler",
]

# Task states, as small ints in a bytearray.
PENDING: Final = 0
READY: Final = 1
RUNNING: Final = 2
COMPLETED: Final = 3
FAILED: Final = 4
SKIPPED: Final = 5
CANCELLED: Final = 6
#: State number → TaskStatus value (READY shows as "queued").
STATE_NAMES: Final = (
    "pending",
    "queued",
    "running",
    "completed",
    "failed",
    "skipped",
    "cancelled",
)


class Scheduler:
    """Ready-set bookkeeping for one workflow run.

    Args:
        deps: ``deps[i]`` lists the indexes task ``i`` depends on.
        priorities: Per-task priority (higher first); None means all equal.
        completed: Indexes already completed (a resumed run); they never run.
    """

    __slots__ = (
        "_dindex",
        "_dstart",
        "_fifo",
        "_heap",
        "_unfinished",
        "_waiting",
        "counts",
        "priorities",
        "state",
    )

    def __init__(
        self,
        deps: Sequence[Sequence[int]],
        priorities: Sequence[int] | None = None,
        completed: Iterable[int] = (),
    ) -> None:
        start = array("q", [0])
        start.extend(accumulate(map(len, deps)))
        index = array("q", [j for needs in deps for j in needs])
        self._setup(start, *invert(start, index), priorities, completed)

    @classmethod
    def from_plan(cls, plan: Plan, completed: Iterable[int] = ()) -> Scheduler:
        """The scheduler of a plan: its dependents come from the plan's CSR arrays."""
        sched = cls.__new__(cls)
        sched._setup(plan.dep_start, *plan.dependents(), plan.priorities, completed)
        return sched

    def _setup(
        self,
        dep_start: Sequence[int],
        dependents_start: array[int],
        dependents_index: array[int],
        priorities: Sequence[int] | None,
        completed: Iterable[int],
    ) -> None:
        n = len(dep_start) - 1
        self.state = bytearray(n)
        #: How many tasks are in each state.
        self.counts = [n, 0, 0, 0, 0, 0, 0]
        self.priorities = priorities if priorities and any(priorities) else None
        # Task i's dependents are _dindex[_dstart[i]:_dstart[i + 1]] (CSR).
        self._dstart = dependents_start
        self._dindex = dependents_index
        self._waiting = list(map(sub, dep_start[1:], dep_start[:-1]))
        self._heap: list[tuple[int, int]] = []
        self._fifo: deque[int] = deque()
        self._unfinished = n
        waiting = self._waiting
        for i in completed:
            self._set(i, COMPLETED)
            self._unfinished -= 1
            for j in self._dependents(i):
                waiting[j] -= 1
        state = self.state
        for i in range(n):
            if waiting[i] == 0 and state[i] == PENDING:
                self._push(i)

    def _dependents(self, i: int) -> array[int]:
        return self._dindex[self._dstart[i] : self._dstart[i + 1]]

    def __repr__(self) -> str:
        return (
            f"<Scheduler tasks={len(self.state)} unfinished={self._unfinished} "
            f"ready={self.counts[READY]} running={self.counts[RUNNING]}>"
        )

    @property
    def finished(self) -> bool:
        """True when every task is completed, failed, skipped or cancelled."""
        return self._unfinished == 0

    @property
    def ready_count(self) -> int:
        """How many tasks could start now."""
        return self.counts[READY]

    def _set(self, i: int, new: int) -> None:
        counts = self.counts
        counts[self.state[i]] -= 1
        counts[new] += 1
        self.state[i] = new

    def _push(self, i: int) -> None:
        self._set(i, READY)
        if self.priorities is None:
            self._fifo.append(i)
        else:
            heapq.heappush(self._heap, (-self.priorities[i], i))

    def pop_ready(self) -> int | None:
        """Take the next ready task (marking it running), or None if none is ready."""
        if self.priorities is None:
            if not self._fifo:
                return None
            i = self._fifo.popleft()
        else:
            if not self._heap:
                return None
            i = heapq.heappop(self._heap)[1]
        self._set(i, RUNNING)
        return i

    def take(self, i: int) -> None:
        """Mark task ``i`` running although this scheduler did not pop it.

        A run shared with other processes takes the tasks a shared queue hands
        it, which this process may not yet know to be ready.
        """
        self._set(i, RUNNING)

    def complete(self, i: int) -> int:
        """Record that running task ``i`` completed; returns how many became ready."""
        self._set(i, COMPLETED)
        self._unfinished -= 1
        released = 0
        waiting = self._waiting
        dstart = self._dstart
        for j in self._dindex[dstart[i] : dstart[i + 1]]:
            waiting[j] -= 1
            if waiting[j] == 0 and self.state[j] == PENDING:
                self._push(j)
                released += 1
        return released

    def fail(self, i: int) -> list[int]:
        """Record that task ``i`` failed; returns its transitive dependents, now skipped."""
        self._set(i, FAILED)
        self._unfinished -= 1
        skipped: list[int] = []
        stack = list(self._dependents(i))
        state = self.state
        while stack:
            j = stack.pop()
            if state[j] == PENDING:
                self._set(j, SKIPPED)
                self._unfinished -= 1
                skipped.append(j)
                stack.extend(self._dependents(j))
        return skipped

    def cancel(self) -> list[int]:
        """Cancel every task that is not final; returns them (running ones included)."""
        cancelled = [i for i, s in enumerate(self.state) if s in (PENDING, READY, RUNNING)]
        for i in cancelled:
            self._set(i, CANCELLED)
        self._unfinished = 0
        self._heap.clear()
        self._fifo.clear()
        return cancelled
