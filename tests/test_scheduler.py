"""Tests for gleitzeit.core._scheduler: the pure ready-set state machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import given
from hypothesis import strategies as st

from gleitzeit.core._scheduler import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    READY,
    RUNNING,
    SKIPPED,
    Scheduler,
)

from .strategies import dags

if TYPE_CHECKING:
    import random


def _transitive_dependents(deps: list[list[int]], roots: set[int]) -> set[int]:
    out: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i, needs in enumerate(deps):
            if i not in out and i not in roots and any(d in roots or d in out for d in needs):
                out.add(i)
                changed = True
    return out


@given(dags(max_size=40), st.sets(st.integers(0, 39)), st.randoms(use_true_random=False))
def test_random_runs_keep_the_invariants(
    deps: list[list[int]], failing: set[int], rnd: random.Random
) -> None:
    """Each task starts once, after its deps; exactly the dependents of failures skip."""
    failing = {f for f in failing if f < len(deps)}
    sched = Scheduler(deps)
    started: list[int] = []
    running: list[int] = []
    failed: set[int] = set()
    while not sched.finished:
        while (i := sched.pop_ready()) is not None:
            assert i not in started
            assert all(sched.state[d] == COMPLETED for d in deps[i])
            started.append(i)
            running.append(i)
        assert running, "nothing running but not finished"
        i = running.pop(rnd.randrange(len(running)))
        if i in failing:
            failed.add(i)
            sched.fail(i)
        else:
            sched.complete(i)
    skipped = {i for i, s in enumerate(sched.state) if s == SKIPPED}
    assert skipped == _transitive_dependents(deps, failed)
    assert {i for i, s in enumerate(sched.state) if s == FAILED} == failed
    assert set(started) == set(range(len(deps))) - skipped
    assert sched.counts[COMPLETED] + sched.counts[FAILED] + sched.counts[SKIPPED] == len(deps)


def test_priority_then_document_order() -> None:
    """Higher priority first; equal priorities keep document order."""
    sched = Scheduler([[], [], [], []], priorities=[0, 2, 0, 1])
    order = []
    while (i := sched.pop_ready()) is not None:
        order.append(i)
    assert order == [1, 3, 0, 2]


def test_resume_skips_completed_and_releases_dependents() -> None:
    """Tasks given as completed never run; their dependents are ready."""
    sched = Scheduler([[], [0], [1]], completed=[0])
    assert sched.state[0] == COMPLETED
    assert sched.pop_ready() == 1
    assert sched.pop_ready() is None
    sched.complete(1)
    assert sched.pop_ready() == 2


def test_cancel_marks_every_unfinished_task() -> None:
    """cancel() turns pending, ready and running tasks into cancelled."""
    sched = Scheduler([[], [], [0]])
    first = sched.pop_ready()
    assert first == 0
    assert sched.state[1] == READY
    assert sched.state[2] == PENDING
    assert sorted(sched.cancel()) == [0, 1, 2]
    assert sched.finished
    assert all(s == CANCELLED for s in sched.state)
    assert sched.counts[CANCELLED] == 3
    assert sched.counts[RUNNING] == 0
    assert "unfinished=0" in repr(sched)
