"""The engine: runs one workflow's tasks under structured concurrency.

Per run, one loop (:meth:`Engine.execute`) owns a
:class:`~gleitzeit.core._scheduler.Scheduler` and repeats:

1. **start** ready tasks while fewer than ``max_concurrent`` are in flight.
   Calls a provider can run synchronously (inline python, built-in tools) run
   right there, up to :data:`INLINE_BATCH` per step; everything else gets one
   coroutine in the run's task group (with its timeout and retries);
2. **wait** for an outcome only when nothing could be started;
3. **record** the step's events in one batch (group commit);
4. **release** dependents of completed tasks, skip dependents of failed ones.

With an ``ordered`` (durable) store, step 4 waits for step 3, so a task's
completion is recorded before any dependent starts. The memory store releases
dependents at once. Nothing outlives the run's task group; cancelling the
run's scope (``cancel_workflow``, the workflow ``timeout``, or the caller being
cancelled) kills whatever is in flight.
"""

from __future__ import annotations

import logging
import math
import random
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import anyio
import anyio.lowlevel
import attrs

from ._gc import gc_paused
from ._providers import Call, ProviderRegistry
from ._stores._state import Completions, Record, as_events
from .core._events import Event, EventKind
from .core._models import TaskStatus, Workflow, WorkflowStatus
from .core._plan import Plan
from .core._refs import make_lookup, substitute, substitute_code
from .core._scheduler import (
    CANCELLED,
    COMPLETED,
    FAILED,
    STATE_NAMES,
    Scheduler,
)
from .core.errors import (
    ErrorCode,
    GleitzeitError,
    PersistenceError,
    TaskError,
    TaskTimeoutError,
    WorkflowError,
    error_to_dict,
    leaf_exceptions,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from types import CodeType

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._providers import Provider
    from ._stores import Store, StoredRun
    from ._stores._state import CompletionRow

__all__ = ["INLINE_BATCH", "Engine", "Listener", "Run"]

log = logging.getLogger("gleitzeit.engine")

#: Inline calls run per scheduler step before the loop yields to others.
INLINE_BATCH: Final = 1024
PYTHON_DEFAULT_TIMEOUT: Final = 30.0
PYTHON: Final = "python/execute"

#: Receives each batch of events (after the store has recorded it).
Listener: TypeAlias = "Callable[[Sequence[Event]], None]"

# An outcome: (task index, result or None, error or None, attempts, last attempt's start)
_Outcome = tuple[int, "dict[str, Any] | None", "GleitzeitError | None", int, float]
#: Sent by a task to wake the scheduler for its start event (index -1: no outcome).
_WAKE: _Outcome = (-1, None, None, 0, 0.0)


@attrs.define(eq=False, repr=False)
class Run:
    """The live state of one workflow run."""

    workflow: Workflow
    #: The workflow's tasks in columns (``plan.ids[i]``, ``plan.methods[i]``, ...).
    plan: Plan
    sched: Scheduler
    index: Mapping[str, int]
    aliases: Mapping[str, str]
    needs_subst: bytes
    max_concurrent: int
    results: dict[str, dict[str, Any]] = attrs.Factory(dict)
    errors: dict[str, GleitzeitError] = attrs.Factory(dict)
    status: WorkflowStatus = WorkflowStatus.PENDING
    error: GleitzeitError | None = None
    done: anyio.Event = attrs.Factory(anyio.Event)
    scope: anyio.CancelScope | None = None
    cancel_requested: bool = False
    created_at: float = attrs.Factory(time.time)
    finished_at: float | None = None
    pending_events: list[Record] = attrs.Factory(list)
    #: ids of pending events for listeners only (inline starts, retried
    #: attempts' failures): stores need not keep them, so they cost no write.
    notices: set[int] = attrs.Factory(set)
    #: True while other processes may execute this run too (redis).
    shared: bool = False
    #: Only join the run if it is live elsewhere; never start it (workers).
    join_only: bool = False

    def __repr__(self) -> str:
        return (
            f"<Run {self.workflow.id} {self.workflow.name!r} {self.status} "
            f"completed={len(self.results)}/{self.workflow.total_tasks}>"
        )

    @property
    def id(self) -> str:
        """The workflow id."""
        return self.workflow.id

    def snapshot(self) -> Workflow:
        """The workflow with every task's current status and the counts."""
        names = [TaskStatus(name) for name in STATE_NAMES]
        tasks = self.plan.with_statuses(map(names.__getitem__, self.sched.state))
        return attrs.evolve(
            self.workflow,
            tasks=tasks,
            status=self.status,
            completed_tasks=self.sched.counts[COMPLETED],
            failed_tasks=self.sched.counts[FAILED],
            created_at=self.created_at,
            finished_at=self.finished_at,
        )

    def ordered_results(self) -> dict[str, dict[str, Any]]:
        """Completed results by task id, in document order."""
        results = self.results
        return {tid: results[tid] for tid in self.plan.ids if tid in results}

    def raise_for_status(self) -> dict[str, dict[str, Any]]:
        """Return the results, or raise the run's error with the partial results."""
        results = self.ordered_results()
        if self.status is WorkflowStatus.COMPLETED:
            return results
        error = self.error or WorkflowError(
            f"Workflow {self.workflow.name!r} ended {self.status}.",
            ErrorCode.WORKFLOW_EXECUTION_FAILED,
        )
        error.data["workflow_id"] = self.id
        error.data["results"] = results
        raise error


def _python_timeout(params: Mapping[str, Any]) -> float:
    """A python/execute call's timeout from its params (the task's own ``timeout`` wins)."""
    raw = params.get("timeout", PYTHON_DEFAULT_TIMEOUT)
    return float(raw) if isinstance(raw, (int, float)) else PYTHON_DEFAULT_TIMEOUT


def _task_timeout(task_id: str, timeout: float) -> TaskTimeoutError:
    return TaskTimeoutError(
        f"Task {task_id!r} ran past its timeout of {timeout:g} s and was stopped.",
        data={"task_id": task_id, "timeout_seconds": timeout},
    )


class _Group:
    """Inline python tasks gathered in one step, in columns (for ``run_programs``)."""

    __slots__ = ("argses", "ids", "indexes", "programs", "timeouts")

    def __init__(self) -> None:
        self.indexes: list[int] = []
        self.ids: list[str] = []
        self.programs: list[CodeType] = []
        self.argses: list[dict[str, Any]] = []
        self.timeouts: list[float] = []

    def take(self) -> _Group:
        """A group with this one's tasks; this one is left empty."""
        taken = _Group()
        taken.indexes, self.indexes = self.indexes, taken.indexes
        taken.ids, self.ids = self.ids, taken.ids
        taken.programs, self.programs = self.programs, taken.programs
        taken.argses, self.argses = self.argses, taken.argses
        taken.timeouts, self.timeouts = self.timeouts, taken.timeouts
        return taken


class Engine:
    """Runs workflows with a set of providers and a store.

    Args:
        providers: Who executes which methods: a registry, or providers to
            put in a new one.
        store: Where state changes are recorded.
        max_concurrent: Default bound on tasks in flight per run.
        isolation: Default ``python/execute`` isolation (``process``/``inline``).
    """

    def __init__(
        self,
        providers: ProviderRegistry | Iterable[Provider],
        store: Store,
        *,
        max_concurrent: int = 16,
        isolation: str = "process",
        listeners: Iterable[Listener] = (),
    ) -> None:
        self.registry = (
            providers if isinstance(providers, ProviderRegistry) else ProviderRegistry(providers)
        )
        self.store = store
        self.max_concurrent = max_concurrent
        self.isolation = isolation
        #: Called with every batch of events after the store recorded it.
        self.listeners = list(listeners)

    @property
    def _steps(self) -> bool:
        """Whether the store takes a step's completions as :class:`Completions`."""
        return hasattr(self.store, "record_step")

    @property
    def task_events(self) -> bool:
        """Whether per-task events are produced (for the store or for listeners)."""
        return self.store.task_events or bool(self.listeners)

    def __repr__(self) -> str:
        return (
            f"<Engine store={self.store.name} max_concurrent={self.max_concurrent} "
            f"isolation={self.isolation}>"
        )

    # --- building runs ------------------------------------------------------

    def prepare(
        self,
        workflow: Workflow,
        *,
        completed: Mapping[str, dict[str, Any]] | None = None,
    ) -> Run:
        """Build the run state of a validated workflow.

        Args:
            workflow: A workflow from :func:`gleitzeit.load_workflow`.
            completed: Results already recorded (a resumed run); those tasks
                never run again.
        """
        with gc_paused():
            return self._prepare(workflow, completed)

    def _prepare(self, workflow: Workflow, completed: Mapping[str, dict[str, Any]] | None) -> Run:
        tasks = workflow.tasks
        # A loaded workflow carries its plan; one built by hand is planned here.
        plan = tasks if isinstance(tasks, Plan) else Plan.from_tasks(tasks)
        index = plan.by_id
        done_idx = [index[tid] for tid in (completed or {}) if tid in index]
        run = Run(
            workflow=workflow,
            plan=plan,
            sched=Scheduler.from_plan(plan, done_idx),
            index=index,
            aliases=plan.aliases,
            needs_subst=plan.needs_subst,
            max_concurrent=max(1, workflow.max_concurrent or self.max_concurrent),
        )
        if completed:
            run.results.update((k, v) for k, v in completed.items() if k in index)
        return run

    def call_for(self, run: Run, i: int) -> Call:
        """The provider call for task ``i``, with its references substituted.

        Raises:
            TaskParameterError: a reference cannot be resolved.
        """
        return self._call(run, i, self._params(run, i))

    def _params(self, run: Run, i: int) -> dict[str, Any]:
        """Task ``i``'s params with its references substituted (as they are without any).

        Raises:
            TaskParameterError: a reference cannot be resolved.
        """
        plan = run.plan
        params = plan.params[i]
        if run.needs_subst[i]:
            method = plan.methods[i]
            lookup = make_lookup(run.results, run.aliases)
            new = {}
            for key, value in params.items():
                if key == "code" and method == PYTHON and isinstance(value, str):
                    new[key] = substitute_code(value, lookup)
                else:
                    new[key] = substitute(value, lookup)
            params = new
            log.debug("task %r: substituted references -> %.200r", plan.ids[i], params)
        return params

    def _call(self, run: Run, i: int, params: dict[str, Any]) -> Call:
        """The provider call for task ``i`` with these (substituted) params."""
        plan = run.plan
        method = plan.methods[i]
        timeout = plan.timeouts.get(i)
        if timeout is None and method == PYTHON:
            timeout = _python_timeout(params)
        return Call(
            method=method,
            params=params,
            task_id=plan.ids[i],
            workflow_id=run.id,
            timeout=timeout,
            isolation=plan.isolations.get(i) or self.isolation,
            source_dir=run.workflow.source_dir,
        )

    def provider_for(self, method: str) -> Provider:
        """The provider of a method.

        Raises:
            ProviderError: PROVIDER_NOT_FOUND when no provider has it.
        """
        return self.registry.provider_for(method)

    # --- running ------------------------------------------------------------

    async def execute(self, run: Run) -> None:
        """Run the workflow to its end; task failures are recorded, not raised.

        Only cancellation from outside propagates (after the state was recorded).
        """
        now = time.time()
        run.status = WorkflowStatus.RUNNING
        coord = self.store.coordinate(run.workflow)
        started = Event(kind=EventKind.WORKFLOW_STARTED, workflow_id=run.id, at=now)
        if coord.remote:  # shared with other processes: start it there, or join it
            if await coord.begin(now, join_only=run.join_only) < 0:
                run.done.set()  # not live any more: nothing to join
                return
            run.shared = True
            self._notify([started])
        else:
            await self.emit([started])
        log.debug(
            "workflow %s %r started: %d tasks", run.id, run.workflow.name, run.workflow.total_tasks
        )
        send, recv = anyio.create_memory_object_stream[_Outcome](math.inf)
        timed_out = False
        try:
            with send, recv, anyio.CancelScope() as scope:
                run.scope = scope
                if run.cancel_requested:
                    scope.cancel()
                if run.workflow.timeout is not None:
                    scope.deadline = anyio.current_time() + run.workflow.timeout
                async with anyio.create_task_group() as tg:
                    if coord.remote:
                        from ._shared import run_shared

                        await run_shared(self, run, coord, tg)
                    else:
                        await self._loop(run, tg, send, recv)
            timed_out = scope.cancelled_caught and not run.cancel_requested
        except BaseException as exc:
            # A store failure (say, a full disk) fails the run with that error;
            # cancellation from outside (or a bug) cancels it. Either way the
            # state is recorded as far as possible, then the exception goes on.
            failure = _lone_gleitzeit_error(exc)
            with anyio.CancelScope(shield=True):
                if run.shared and failure is None and not run.cancel_requested:
                    # Interrupted: hand the tasks held here back to the others,
                    # who go on with the run (only cancel_workflow ends it for all).
                    try:
                        await coord.end(cancel=False, hand_back=True)
                    finally:
                        run.done.set()
                else:
                    await self._finish(run, cancelled=failure is None, failure=failure)
                    if run.shared:
                        try:
                            await coord.end(
                                cancel=run.cancel_requested, hand_back=failure is not None
                            )
                        except GleitzeitError as again:  # the store failed once more
                            log.warning(
                                "workflow %s: could not leave the shared run: %s", run.id, again
                            )
            if failure is not None:
                raise failure from (exc if failure is not exc else None)
            # Ctrl-C (trio raises it in whichever task was running) leaves as
            # itself, not wrapped in the task group's exception group.
            interrupt = _interrupt(exc)
            if interrupt is not None and interrupt is not exc:
                raise interrupt from None
            raise
        await self._finish(run, cancelled=run.cancel_requested, timed_out=timed_out)
        if run.shared:
            with anyio.CancelScope(shield=True):
                await coord.end(cancel=run.cancel_requested or timed_out, hand_back=False)

    async def _loop(
        self,
        run: Run,
        tg: TaskGroup,
        send: MemoryObjectSendStream[_Outcome],
        recv: MemoryObjectReceiveStream[_Outcome],
    ) -> None:
        sched = run.sched
        plan = run.plan
        ids, methods, retries = plan.ids, plan.methods, plan.retries
        params_of, timeouts, isolations = plan.params, plan.timeouts, plan.isolations
        needs_subst = run.needs_subst
        results = run.results
        ordered = self.store.ordered
        fast = not ordered and not self.task_events
        provider_of = self.registry.get
        limit = run.max_concurrent
        inflight = 0
        outcomes: list[_Outcome] = []
        # The inline fast path: python/execute code that the python provider
        # compiles once per source and runs in groups (no Call, no request dict).
        python = provider_of(PYTHON)
        program_of = getattr(python, "inline_program", None)
        if getattr(python, "run_programs", None) is None:
            program_of = None
        isolation = self.isolation
        group = _Group()
        while not sched.finished:
            inline_runs = 0
            # One synchronous batch: collecting cycles can wait until it is done.
            with gc_paused():
                while True:
                    while inflight < limit and inline_runs < INLINE_BATCH:
                        i = sched.pop_ready()
                        if i is None:
                            break
                        method = methods[i]
                        call: Call | None = None
                        if (
                            program_of is not None
                            and method == PYTHON
                            and i not in retries
                            and (isolations.get(i) or isolation) == "inline"
                        ):
                            params = params_of[i]
                            if needs_subst[i]:
                                try:
                                    params = self._params(run, i)
                                except GleitzeitError as exc:
                                    if group.indexes:  # keep the order tasks were taken in
                                        self._run_group(run, python, group, fast, outcomes)
                                    inline_runs += 1
                                    outcome: _Outcome = (
                                        i,
                                        None,
                                        exc,
                                        1,
                                        0.0 if fast else time.time(),
                                    )
                                    if ordered:
                                        outcomes.append(outcome)
                                    else:
                                        self._apply(run, (outcome,))
                                    continue
                            job = program_of(params)
                            if job is not None:
                                timeout = timeouts.get(i) if timeouts else None
                                if timeout is None:
                                    raw = params.get("timeout")
                                    timeout = (
                                        float(raw)
                                        if isinstance(raw, (int, float))
                                        else PYTHON_DEFAULT_TIMEOUT
                                    )
                                group.indexes.append(i)
                                group.ids.append(ids[i])
                                group.programs.append(job[0])
                                group.argses.append(job[1])
                                group.timeouts.append(timeout)
                                inline_runs += 1
                                continue
                            call = self._call(run, i, params)  # run_inline reports the problem
                        if group.indexes:  # keep the order tasks were taken in
                            self._run_group(run, python, group, fast, outcomes)
                        provider = provider_of(method)
                        if provider is not None and i not in retries:
                            start = 0.0 if fast else time.time()
                            try:
                                if call is None:
                                    call = self.call_for(run, i)
                            except GleitzeitError as exc:
                                outcome = (i, None, exc, 1, start)
                            else:
                                if not provider.runs_inline(call):
                                    inflight += 1
                                    tg.start_soon(self._attempts, run, i, send, call)
                                    continue
                                if self.listeners:
                                    self._notice(
                                        run,
                                        Event(
                                            kind=EventKind.TASK_STARTED,
                                            workflow_id=run.id,
                                            task_id=ids[i],
                                            at=start,
                                            attempt=1,
                                        ),
                                    )
                                outcome = self._run_inline(provider, call, i, start)
                            inline_runs += 1
                            if ordered:
                                outcomes.append(outcome)
                            elif fast and outcome[2] is None:
                                results[ids[i]] = outcome[1]  # type: ignore[assignment]
                                sched.complete(i)
                            else:
                                self._apply(run, (outcome,))
                            continue
                        inflight += 1
                        tg.start_soon(self._attempts, run, i, send, None)
                    if not group.indexes:
                        break
                    # Their completions may release more tasks for this batch.
                    self._run_group(run, python, group, fast, outcomes)
            if not outcomes and not inline_runs and not run.pending_events:
                if inflight == 0:  # nothing ran and nothing is running: a bug
                    raise AssertionError(f"scheduler stalled: {sched!r}")  # pragma: no cover
                item = await recv.receive()
                if item[0] >= 0:  # not just a wake-up for new events
                    outcomes.append(item)
                    inflight -= 1
            while inflight:
                try:
                    item = recv.receive_nowait()
                except anyio.WouldBlock:
                    break
                if item[0] >= 0:
                    outcomes.append(item)
                    inflight -= 1
            if ordered:
                # Group commit: completions are recorded before dependents start.
                self._stage(run, outcomes)
                try:
                    await self._flush(run)
                except PersistenceError as exc:
                    self._apply_recorded(run, outcomes, exc)
                    raise
                self._apply(run, outcomes, stage=False)
            else:
                self._apply(run, outcomes)
                await self._flush(run)
            outcomes.clear()
            if inline_runs >= INLINE_BATCH:
                # A full batch may have awaited nothing: let the run's deadline,
                # cancel_workflow and other tasks in.
                await anyio.lowlevel.checkpoint()

    def _run_group(
        self, run: Run, python: Any, group: _Group, fast: bool, outcomes: list[_Outcome]
    ) -> None:
        """Run a group of inline python tasks and apply (or, ordered, collect) their outcomes."""
        starts: list[float] | None = None if fast else []
        done: list[dict[str, Any] | Exception] = python.run_programs(
            group.programs, group.argses, group.ids, starts
        )
        group = group.take()
        if fast:
            results = run.results
            complete = run.sched.complete
            for i, tid, result, timeout in zip(
                group.indexes, group.ids, done, group.timeouts, strict=True
            ):
                if type(result) is dict and result["execution_time"] <= timeout:
                    results[tid] = result
                    complete(i)
                else:
                    error = self._inline_error(result, tid, timeout)
                    self._apply(run, ((i, None, error, 1, 0.0),))
            return
        assert starts is not None
        ordered = self.store.ordered
        for i, tid, result, timeout, start in zip(
            group.indexes, group.ids, done, group.timeouts, starts, strict=True
        ):
            if self.listeners:
                self._notice(
                    run,
                    Event(
                        kind=EventKind.TASK_STARTED,
                        workflow_id=run.id,
                        task_id=tid,
                        at=start,
                        attempt=1,
                    ),
                )
            if type(result) is dict and result["execution_time"] <= timeout:
                outcome: _Outcome = (i, result, None, 1, start)
            else:
                outcome = (i, None, self._inline_error(result, tid, timeout), 1, start)
            if ordered:
                outcomes.append(outcome)
            else:
                self._apply(run, (outcome,))

    def _inline_error(
        self, result: dict[str, Any] | Exception, task_id: str, timeout: float
    ) -> GleitzeitError:
        """Why a task of a group failed: its own error, its timeout, or a surprise."""
        if isinstance(result, GleitzeitError):
            return result
        if isinstance(result, dict):  # it succeeded, too late
            return _task_timeout(task_id, timeout)
        return self._unexpected(None, result, task_id)

    def _run_inline(self, provider: Provider, call: Call, i: int, start: float) -> _Outcome:
        try:
            return (i, self._call_inline(provider, call), None, 1, start)
        except GleitzeitError as exc:
            return (i, None, exc, 1, start)
        except Exception as exc:
            return (i, None, self._unexpected(call, exc), 1, start)

    def _call_inline(self, provider: Provider, call: Call) -> dict[str, Any]:
        """Run a call on the event loop; a timeout can only be noticed afterwards."""
        start = time.perf_counter()
        result = provider.run_inline(call)
        if call.timeout is not None and time.perf_counter() - start > call.timeout:
            raise self._timeout_error(call)
        return result

    async def _attempts(
        self, run: Run, i: int, send: MemoryObjectSendStream[_Outcome], call: Call | None
    ) -> None:
        """Run task ``i`` with its retries; send exactly one outcome."""
        tid, method, retry = run.plan.ids[i], run.plan.methods[i], run.plan.retries.get(i)
        attempt = 0
        while True:
            attempt += 1
            start = time.time()
            if self.task_events:
                run.pending_events.append(
                    Event(
                        kind=EventKind.TASK_STARTED,
                        workflow_id=run.id,
                        task_id=tid,
                        at=start,
                        attempt=attempt,
                    )
                )
                if self.listeners:
                    send.send_nowait(_WAKE)  # listeners hear of the start now, not at its end
            log.debug("task %r attempt %d started (%s)", tid, attempt, method)
            try:
                if call is None:
                    call = self.call_for(run, i)
                result = await self._attempt(self.provider_for(method), call)
            except GleitzeitError as exc:
                error = exc
            except Exception as exc:
                error = self._unexpected(call, exc, tid)
            else:
                send.send_nowait((i, result, None, attempt, start))
                return
            if retry is not None and attempt < retry.max_attempts:
                if self.listeners:
                    self._notice(
                        run,
                        Event(
                            kind=EventKind.TASK_FAILED,
                            workflow_id=run.id,
                            task_id=tid,
                            at=time.time(),
                            attempt=attempt,
                            error=error_to_dict(error),
                            status="retrying",
                        ),
                    )
                delay = retry.delay(attempt, random.random())
                log.debug(
                    "task %r attempt %d failed (%s); retrying in %.2fs",
                    tid,
                    attempt,
                    error.code.name,
                    delay,
                )
                await anyio.sleep(delay)
                call = None  # substitute again: cheap, and keeps attempts identical
                continue
            send.send_nowait((i, None, error, attempt, start))
            return

    async def run_call(self, call: Call) -> dict[str, Any]:
        """One attempt at a single call outside any workflow (timeout enforced)."""
        return await self._attempt(self.provider_for(call.method), call)

    async def _attempt(self, provider: Provider, call: Call) -> dict[str, Any]:
        if provider.runs_inline(call):
            await anyio.lowlevel.checkpoint()
            return self._call_inline(provider, call)
        if call.timeout is None:
            return await provider.execute(call)
        with anyio.move_on_after(call.timeout):
            return await provider.execute(call)
        raise self._timeout_error(call)

    @staticmethod
    def _timeout_error(call: Call) -> TaskTimeoutError:
        assert call.timeout is not None
        return _task_timeout(call.task_id, call.timeout)

    @staticmethod
    def _unexpected(call: Call | None, exc: Exception, task_id: str | None = None) -> TaskError:
        tid = call.task_id if call is not None else task_id
        return TaskError(
            f"Task {tid!r} failed: {type(exc).__name__}: {exc}",
            ErrorCode.TASK_EXECUTION_FAILED,
            {
                "task_id": tid,
                "error_type": type(exc).__name__,
                "traceback": "".join(traceback.format_exception(exc)),
            },
        )

    def _stage(self, run: Run, outcomes: Sequence[_Outcome]) -> None:
        """Queue the events of these outcomes for the next flush.

        For a store that records steps (``record_step``), completions are
        queued as :class:`Completions` rows, one record for a run of them, in
        the order of ``outcomes``: no :class:`Event` per task.
        """
        ids = run.plan.ids
        now = time.time()
        events = run.pending_events
        task_events = self.task_events
        steps = self._steps
        rows: list[CompletionRow] | None = None
        for i, result, error, attempts, started in outcomes:
            tid = ids[i]
            if error is None:
                if steps:
                    if rows is None:
                        rows = []
                        events.append(Completions(run.id, now, rows))
                    rows.append((tid, attempts, started, result))  # type: ignore[arg-type]
                elif task_events:
                    events.append(
                        Event(
                            kind=EventKind.TASK_COMPLETED,
                            workflow_id=run.id,
                            task_id=tid,
                            at=now,
                            attempt=attempts,
                            result=result,
                            started_at=started,
                        )
                    )
                continue
            # errors name their task and workflow end to end
            error.data.setdefault("task_id", tid)
            error.data["workflow_id"] = run.id
            rows = None  # completions after this failure go in a record after it
            if task_events:
                events.append(
                    Event(
                        kind=EventKind.TASK_FAILED,
                        workflow_id=run.id,
                        task_id=tid,
                        at=now,
                        attempt=attempts,
                        error=error_to_dict(error),
                        started_at=started,
                    )
                )

    def _apply_recorded(
        self, run: Run, outcomes: Sequence[_Outcome], exc: PersistenceError
    ) -> None:
        """Apply the outcomes a failed flush still recorded (a full disk keeps what fits).

        The store's error says how many leading events of the batch it kept
        (``events_recorded`` of ``events``); the outcomes' events end the batch.
        """
        total = exc.data.get("events")
        if not isinstance(total, int):
            return
        lost = total - int(exc.data.get("events_recorded", 0))
        kept = len(outcomes) - lost
        if kept > 0:
            self._apply(run, outcomes[:kept], stage=False)

    def _apply(self, run: Run, outcomes: Sequence[_Outcome], *, stage: bool = True) -> None:
        """Update the scheduler with outcomes (and stage their events)."""
        if stage:
            self._stage(run, outcomes)
        sched = run.sched
        ids = run.plan.ids
        for i, result, error, _attempts, _started in outcomes:
            tid = ids[i]
            if error is None:
                assert result is not None
                run.results[tid] = result
                sched.complete(i)
                log.debug("task %r completed", tid)
                continue
            run.errors[tid] = error
            if run.error is None:
                run.error = error
            skipped = sched.fail(i)
            log.debug("task %r failed: %s; skipping %d dependents", tid, error, len(skipped))
            if self.task_events:
                now = time.time()
                run.pending_events.extend(
                    Event(kind=EventKind.TASK_SKIPPED, workflow_id=run.id, task_id=ids[j], at=now)
                    for j in skipped
                )

    async def emit(self, events: Sequence[Event]) -> None:
        """Record a batch of events in the store, then hand it to the listeners."""
        await self.store.record(events)
        self._notify(events)

    def _notify(self, events: Sequence[Record]) -> None:
        if not self.listeners:
            return
        if any(isinstance(e, Completions) for e in events):
            events = as_events(events)
        for listener in self.listeners:
            try:
                listener(events)  # type: ignore[arg-type]
            except Exception:  # a progress display must never break a run
                log.exception("an event listener failed; it is called again next time")

    @staticmethod
    def _notice(run: Run, event: Event) -> None:
        """Queue an event for the listeners only (in order with the others)."""
        run.pending_events.append(event)
        run.notices.add(id(event))

    async def _flush(self, run: Run) -> None:
        if not run.pending_events:
            return
        records, run.pending_events = run.pending_events, []
        stored = records
        if run.notices:
            notices, run.notices = run.notices, set()
            stored = [e for e in records if id(e) not in notices]
        if stored:
            record_step = getattr(self.store, "record_step", None)
            if record_step is not None:
                await record_step(stored)
            else:
                await self.store.record(stored)  # type: ignore[arg-type]
        self._notify(records)

    async def _finish(
        self,
        run: Run,
        *,
        cancelled: bool,
        timed_out: bool = False,
        failure: GleitzeitError | None = None,
    ) -> None:
        if run.done.is_set():
            return
        sched = run.sched
        ids = run.plan.ids
        if not sched.finished:
            cancelled_tasks = sched.cancel()
            if self.task_events:
                now = time.time()
                run.pending_events.extend(
                    Event(
                        kind=EventKind.TASK_CANCELLED,
                        workflow_id=run.id,
                        task_id=ids[j],
                        at=now,
                    )
                    for j in cancelled_tasks
                )
        if failure is not None:
            run.status = WorkflowStatus.FAILED
            run.error = failure
        elif timed_out:
            run.status = WorkflowStatus.FAILED
            run.error = WorkflowError(
                f"Workflow {run.workflow.name!r} ran past its timeout of "
                f"{run.workflow.timeout:g} s; unfinished tasks were cancelled.",
                ErrorCode.WORKFLOW_TIMEOUT,
                {"workflow_id": run.id, "timeout_seconds": run.workflow.timeout},
            )
        elif cancelled:
            run.status = WorkflowStatus.CANCELLED
            run.error = WorkflowError(
                f"Workflow {run.workflow.name!r} was cancelled; "
                f"{sched.counts[CANCELLED]} tasks did not finish. Resume it to finish.",
                ErrorCode.WORKFLOW_CANCELLED,
                {"workflow_id": run.id},
            )
        elif sched.counts[FAILED]:
            run.status = WorkflowStatus.FAILED
        else:
            run.status = WorkflowStatus.COMPLETED
        run.finished_at = time.time()
        if isinstance(failure, PersistenceError):
            # The store just failed (a full disk, say): store only the run's end, the
            # record likeliest to fit; the task events before it go to listeners only.
            run.notices.update(id(e) for e in run.pending_events)
        run.pending_events.append(
            Event(
                kind=EventKind.WORKFLOW_FINISHED,
                workflow_id=run.id,
                at=run.finished_at,
                status=run.status.value,
                error=error_to_dict(run.error) if run.error is not None else None,
            )
        )
        try:
            await self._flush(run)
        except GleitzeitError:
            if failure is None:
                raise
            log.warning("workflow %s: could not record its failure: the store failed again", run.id)
        finally:
            run.done.set()
            log.debug("workflow %s finished: %s", run.id, run.status)


def _lone_gleitzeit_error(exc: BaseException) -> GleitzeitError | None:
    """The GleitzeitError behind ``exc``, unwrapping a task group's exception group.

    None when ``exc`` is (or includes) cancellation, or is anything else.
    """
    if isinstance(exc, GleitzeitError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = leaf_exceptions(exc)
        if len(leaves) == 1 and isinstance(leaves[0], GleitzeitError):
            return leaves[0]
    return None


def _interrupt(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt in ``exc`` (itself or inside a task group's group)."""
    for leaf in leaf_exceptions(exc):
        if isinstance(leaf, KeyboardInterrupt):
            return leaf
    return None


def stored_snapshot(stored: StoredRun) -> Workflow:
    """A status snapshot of a stored (not live) workflow."""
    statuses = stored.task_status
    plan = stored.workflow.tasks
    tasks = (
        plan.with_statuses(TaskStatus(statuses.get(tid, "pending")) for tid in plan.ids)
        if isinstance(plan, Plan)
        else tuple(attrs.evolve(t, status=TaskStatus(statuses.get(t.id, "pending"))) for t in plan)
    )
    counts = {"completed": 0, "failed": 0}
    for status in statuses.values():
        if status in counts:
            counts[status] += 1
    return attrs.evolve(
        stored.workflow,
        tasks=tasks,
        status=stored.status,
        completed_tasks=counts["completed"],
        failed_tasks=counts["failed"],
        created_at=stored.created_at,
        finished_at=stored.finished_at,
    )
