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
from gleitzeit._providers.python import PythonProvider
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


class NoFastPath(PythonProvider):
    """The python provider without its inline fast path: every call through run_inline."""

    def inline_program(self, params: Any) -> None:
        return None


#: Task bodies for the fast-path differential test; {i} is the task's number,
#: {ref} a reference to one of its dependencies' results (or None without any).
SNIPPETS = [
    "result = {i}",
    "print('out', {i})\nresult = [{i}, ({i},), {{'k': {{{i}}}}}]",
    "import sys\nprint('err', {i}, file=sys.stderr)\nresult = {ref}",
    "result = {{'dep': {ref}, 'text': '$${{x}} {ref}'}}",
    "print('before')\nraise ValueError('boom {i}')",
    "import sys\nprint('bye')\nsys.exit(0)",
    "import sys\nsys.exit({i} + 1)",
    "result = float('nan')",
    "result = (args, context)",
    "def f():\n    return {i}\nresult = f()",
    "del result",
    "import sys\nsys.stdout.close()",
    "import sys\nprint('x')\nsys.stdout.seek(0)\nresult = sys.stdin.read()",
    "import sys\nsys.stdin.write('leak')\nsys.stdin.seek(0)",
    "import sys\nsys.stdout = None\nsys.argv = ['changed']",
    "import sys\nresult = [sys.stdin.read(), sys.argv == ['changed']]",
    "result = 1 +",
    "raise RuntimeError('the same code in every task')",
    "import time\ntime.sleep(0.02)",
]
SLEEPS = len(SNIPPETS) - 1  # the snippet that overruns its timeout


def _fast_path_doc(deps: list[list[int]], kinds: list[int], extras: list[int]) -> dict[str, Any]:
    tasks = []
    for i, needs in enumerate(deps):
        kind = kinds[i % len(kinds)]
        ref = f"${{t{needs[-1]}.result}}" if needs else "None"
        params: dict[str, Any] = {"code": SNIPPETS[kind].format(i=i, ref=ref)}
        extra = extras[i % len(extras)]
        if extra == 1:
            params["args"] = {"a": i, "not an identifier": 1, "context": "own"}
        elif extra == 2:
            params["args"] = {"dep": ref if needs else i}
        task: dict[str, Any] = {
            "name": f"t{i}",
            "method": "python/execute",
            "params": params,
            "dependencies": [f"t{d}" for d in needs],
        }
        if kind == SLEEPS:
            if extra == 3:
                params["timeout"] = 0.01
            else:
                task["timeout"] = 0.01
        tasks.append(task)
    return {"name": "fast path", "tasks": tasks}


def _comparable(run: Any, events: list[Event]) -> Any:
    """What must not depend on the path taken: results, errors, statuses, events."""
    results = {
        tid: {k: v for k, v in r.items() if k != "execution_time"} for tid, r in run.results.items()
    }
    errors = {}
    for tid, error in run.errors.items():
        data = dict(error.data)
        del data["workflow_id"]  # each run has its own
        tb = data.pop("traceback", "")
        if "stdout" in data:  # the code's own failure: its traceback is the user's frames
            data["traceback"] = tb
        else:  # an unexpected error: its traceback shows gleitzeit's frames
            data["traceback"] = tb.strip().splitlines()[-1:]
        errors[tid] = (type(error).__name__, error.code, error.message, data)
    statuses = [t.status.value for t in run.snapshot().tasks]
    kinds = [(e.kind, e.task_id, e.attempt, e.status) for e in events]
    return run.status, results, errors, statuses, kinds


@given(
    deps=dags(max_size=24),
    kinds=st.lists(st.integers(0, len(SNIPPETS) - 1), min_size=1, max_size=24),
    extras=st.lists(st.integers(0, 3), min_size=1, max_size=24),
    mode=st.sampled_from(["memory", "listeners", "ordered"]),
)
async def test_inline_fast_path_matches_run_inline(
    deps: list[list[int]], kinds: list[int], extras: list[int], mode: str
) -> None:
    """Inline python tasks run in groups give exactly the results, errors (codes,
    messages, output, tracebacks), statuses and events that run_inline gives task
    by task: with and without references in one group, code that fails, exits,
    times out or replaces its streams mid-group, with listeners on or off, on the
    memory store and on an ordered one."""
    doc = _fast_path_doc(deps, kinds, extras)
    seen = []
    for provider in (PythonProvider(), NoFastPath()):
        events: list[Event] = []
        store = MemoryStore() if mode == "memory" else RecordingStore(mode == "ordered")
        listeners = [events.extend] if mode != "memory" else []
        engine = Engine([provider], store, isolation="inline", listeners=listeners)
        wf = load_workflow(doc)
        run = engine.prepare(wf)
        await engine.emit(
            [Event(kind=EventKind.WORKFLOW_SUBMITTED, workflow_id=wf.id, at=0.0, workflow=wf)]
        )
        await engine.execute(run)
        seen.append(_comparable(run, events))
    assert seen[0] == seen[1]


async def test_inline_group_with_refs_a_raise_mid_group_and_a_timeout() -> None:
    """One step's group of inline tasks: tasks sharing one code object where the
    middle one raises, tasks with and without references, and one that overruns
    its timeout; each gets its own outcome, output and events (listeners on)."""
    same = (
        "print('n', args['n'])\nif args['n'] == 2:\n    raise ValueError('two')\nresult = args['n']"
    )
    tasks: list[dict[str, Any]] = [
        {"name": f"s{n}", "method": "python/execute", "params": {"code": same, "args": {"n": n}}}
        for n in range(4)
    ]
    tasks.append(
        {
            "name": "ref",
            "method": "python/execute",
            "params": {"code": "result = ${s1.result} + ${s3.result}"},
        }
    )
    tasks.append(
        {
            "name": "slow",
            "method": "python/execute",
            "params": {"code": "import time\ntime.sleep(0.02)\nresult = 'late'", "timeout": 0.01},
        }
    )
    tasks.append({"name": "after", "method": "python/execute", "params": {"code": "result = 9"}})
    events: list[Event] = []
    engine = Engine(
        [PythonProvider()], MemoryStore(), isolation="inline", listeners=[events.extend]
    )
    wf = load_workflow({"name": "group", "tasks": tasks})
    run = engine.prepare(wf)
    await engine.execute(run)

    assert {tid: r["result"] for tid, r in run.results.items()} == {
        "s0": 0,
        "s1": 1,
        "s3": 3,
        "ref": 4,
        "after": 9,
    }
    assert run.results["s3"]["stdout"] == "n 3\n"
    error = run.errors["s2"]
    assert error.code == ErrorCode.TASK_EXECUTION_FAILED
    assert error.data["stdout"] == "n 2\n"
    assert "ValueError: two" in error.data["traceback"]
    assert run.errors["slow"].code == ErrorCode.TASK_TIMEOUT
    assert run.errors["slow"].data["timeout_seconds"] == 0.01
    per_task = [(e.kind.value, e.task_id) for e in events if e.task_id is not None]
    for tid in ("s0", "s1", "s2", "s3", "ref", "slow", "after"):
        assert per_task.count(("task_started", tid)) == 1
    ends = {tid: kind for kind, tid in per_task if kind != "task_started"}
    assert ends == {
        "s0": "task_completed",
        "s1": "task_completed",
        "s2": "task_failed",
        "s3": "task_completed",
        "ref": "task_completed",
        "slow": "task_failed",
        "after": "task_completed",
    }


async def test_a_workflow_timeout_stops_a_long_inline_run() -> None:
    """Inline tasks that never wait still let the workflow's deadline in between
    batches: the run fails with WORKFLOW_TIMEOUT long before its 3,000 tasks are done."""
    doc = {
        "name": "long",
        "timeout": 0.1,
        "tasks": [
            {
                "name": f"t{i}",
                "method": "python/execute",
                "params": {"code": "import time\ntime.sleep(0.0005)"},
            }
            for i in range(3000)
        ],
    }
    engine = Engine([PythonProvider()], MemoryStore(), isolation="inline")
    run = engine.prepare(load_workflow(doc))
    await engine.execute(run)
    assert run.status is WorkflowStatus.FAILED
    assert run.error is not None
    assert run.error.code == ErrorCode.WORKFLOW_TIMEOUT
    assert len(run.results) < 3000
