"""Property tests of the engine's run loop over random DAGs, on trio and asyncio."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gleitzeit import load_workflow
from gleitzeit._engine import Engine
from gleitzeit._providers import BaseProvider
from gleitzeit._stores.memory import MemoryStore
from gleitzeit.core._events import Event, EventKind
from gleitzeit.core._methods import MethodSpec
from gleitzeit.core._models import WorkflowStatus
from gleitzeit.core.errors import ErrorCode, PersistenceError, TaskError

from .strategies import dag_workflow, dags

if TYPE_CHECKING:
    import random

    from gleitzeit._providers import Call

pytestmark = pytest.mark.anyio


class RecordingStore(MemoryStore):
    """A memory store that can claim to be ordered and remembers recorded completions."""

    def __init__(self, ordered: bool) -> None:
        super().__init__()
        self.ordered = ordered
        self.task_events = True  # unlike the plain memory store, record every task
        self.recorded_completions: set[str] = set()

    async def record(self, events: Any) -> None:
        for event in events:
            if event.kind is EventKind.TASK_COMPLETED:
                self.recorded_completions.add(event.task_id)
        await super().record(events)


class Probe(BaseProvider):
    """A provider that checks the engine's invariants while tasks execute."""

    provider_id = "probe"
    specs = (MethodSpec("python/execute"),)

    def __init__(
        self,
        deps: dict[str, list[str]],
        failing: set[str],
        inline: set[str],
        store: RecordingStore,
        rnd: random.Random,
    ) -> None:
        self.deps, self.failing, self.inline, self.store, self.rnd = (
            deps,
            failing,
            inline,
            store,
            rnd,
        )
        self.started: list[str] = []
        self.completed: set[str] = set()
        self.violations: list[str] = []
        self.inflight = 0
        self.max_inflight = 0

    def runs_inline(self, call: Call) -> bool:
        return call.task_id in self.inline

    def _begin(self, tid: str) -> None:
        if tid in self.started:
            self.violations.append(f"{tid} started twice")
        self.started.append(tid)
        for dep in self.deps[tid]:
            if dep not in self.completed:
                self.violations.append(f"{tid} started before {dep} completed")
            if self.store.ordered and dep not in self.store.recorded_completions:
                self.violations.append(f"{tid} started before {dep}'s completion was recorded")

    def _end(self, tid: str) -> dict[str, Any]:
        if tid in self.failing:
            raise TaskError(f"{tid} fails on purpose", data={"task_id": tid})
        self.completed.add(tid)
        return {"result": tid}

    def run_inline(self, call: Call) -> dict[str, Any]:
        self._begin(call.task_id)
        return self._end(call.task_id)

    async def execute(self, call: Call) -> dict[str, Any]:
        self._begin(call.task_id)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            for _ in range(self.rnd.randrange(4)):
                await anyio.lowlevel.checkpoint()
        finally:
            self.inflight -= 1
        return self._end(call.task_id)


def _expected(deps: list[list[int]], failing: set[int]) -> tuple[set[int], set[int]]:
    """(failed, skipped): a failing task downstream of a failure is skipped, not run."""
    failed: set[int] = set()
    skipped: set[int] = set()
    for i, needs in enumerate(deps):  # deps only point backwards: one pass suffices
        if any(d in failed or d in skipped for d in needs):
            skipped.add(i)
        elif i in failing:
            failed.add(i)
    return failed, skipped


@given(
    deps=dags(max_size=30),
    failing=st.sets(st.integers(0, 29), max_size=4),
    inline=st.sets(st.integers(0, 29)),
    limit=st.integers(1, 5),
    ordered=st.booleans(),
    rnd=st.randoms(use_true_random=False),
)
async def test_random_dags_keep_every_invariant(
    deps: list[list[int]],
    failing: set[int],
    inline: set[int],
    limit: int,
    ordered: bool,
    rnd: random.Random,
) -> None:
    """Each task runs at most once, after its deps (recorded first on ordered stores);
    exactly the transitive dependents of failures are skipped; everything else
    completes; in-flight stays within max_concurrent; the error carries the results."""
    n = len(deps)
    failing = {f for f in failing if f < n}
    names = [f"t{i}" for i in range(n)]
    store = RecordingStore(ordered)
    probe = Probe(
        {names[i]: [names[d] for d in ds] for i, ds in enumerate(deps)},
        {names[i] for i in failing},
        {names[i] for i in inline if i < n},
        store,
        rnd,
    )
    engine = Engine([probe], store, max_concurrent=limit)
    wf = load_workflow(dag_workflow(deps))
    run = engine.prepare(wf)
    await store.record(
        [Event(kind=EventKind.WORKFLOW_SUBMITTED, workflow_id=wf.id, at=0.0, workflow=wf)]
    )
    await engine.execute(run)

    assert probe.violations == []
    assert probe.max_inflight <= limit
    failing, skipped = _expected(deps, failing)
    snapshot = run.snapshot()
    statuses = {t.id: t.status.value for t in snapshot.tasks}
    for i, name in enumerate(names):
        expected = "failed" if i in failing else "skipped" if i in skipped else "completed"
        assert statuses[name] == expected, (name, statuses)
    assert sorted(probe.started) == sorted(n_ for i, n_ in enumerate(names) if i not in skipped)
    assert snapshot.completed_tasks == n - len(failing) - len(skipped)
    assert snapshot.failed_tasks == len(failing)
    stored = await store.load(wf.id)
    assert stored is not None
    assert stored.results == run.results
    if failing:
        assert run.status is WorkflowStatus.FAILED
        with pytest.raises(TaskError) as info:
            run.raise_for_status()
        err = info.value
        assert err.code == ErrorCode.TASK_EXECUTION_FAILED
        assert err.data["task_id"] in {names[i] for i in failing}
        assert err.data["workflow_id"] == wf.id
        assert set(err.data["results"]) == set(probe.completed)
        assert list(err.data["results"]) == [n_ for n_ in names if n_ in probe.completed]
    else:
        assert run.status is WorkflowStatus.COMPLETED
        assert list(run.raise_for_status()) == names


class FailingStore(RecordingStore):
    """Fails the n-th write (and, if `sticky`, every write after it)."""

    def __init__(self, fail_at: int, sticky: bool) -> None:
        super().__init__(ordered=True)
        self.fail_at, self.sticky, self.calls = fail_at, sticky, 0

    async def record(self, events: Any) -> None:
        self.calls += 1
        if self.calls == self.fail_at or (self.sticky and self.calls > self.fail_at):
            raise PersistenceError(
                "the disk is full", ErrorCode.PERSISTENCE_WRITE_FAILED, {"backend": "test"}
            )
        await super().record(events)


@pytest.mark.parametrize("sticky", [True, False])
async def test_store_failure_mid_run_fails_the_run_with_that_error(sticky: bool) -> None:
    """A store that fails mid-run ends it with its PersistenceError (not an exception
    group, not 'cancelled'); what was recorded before stays recorded."""
    from gleitzeit._providers.python import PythonProvider

    store = FailingStore(fail_at=4, sticky=sticky)
    engine = Engine([PythonProvider()], store, isolation="inline")
    wf = load_workflow(dag_workflow([[i - 1] if i else [] for i in range(8)]))
    await store.record(
        [Event(kind=EventKind.WORKFLOW_SUBMITTED, workflow_id=wf.id, at=0.0, workflow=wf)]
    )
    run = engine.prepare(wf)
    with pytest.raises(PersistenceError) as info:
        await engine.execute(run)
    assert info.value.code == ErrorCode.PERSISTENCE_WRITE_FAILED
    assert run.status is WorkflowStatus.FAILED
    assert run.error is info.value
    stored = await store.load(wf.id)
    assert stored is not None
    assert set(stored.results) == store.recorded_completions
    assert stored.results, "completions recorded before the failure are kept"
    if not sticky:  # the store recovered: the failure itself was recorded
        assert stored.status is WorkflowStatus.FAILED
