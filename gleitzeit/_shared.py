"""The engine's loop for a run shared with other processes (``persistence="redis"``).

The local :class:`~gleitzeit.core._scheduler.Scheduler` still tracks every
task's state, but which task this process runs is decided by the shared
queue: a poller claims up to the free slots (``max_concurrent`` minus the
tasks held), and delivers the claims together with every outcome recorded
by any process — this one included — into one inbox. The loop:

1. starts the claimed tasks (inline ones right here, others in the run's
   task group, with their timeouts and retries, as on the local path);
2. records the outcomes of its own tasks with the coordinator (one Lua
   script per batch: result, acknowledgement, newly ready dependents);
3. applies outcomes from the outcome stream — its own and other processes'
   alike — to the scheduler, once each: results, failures, skipped
   dependents, and the events listeners hear.

The run is over for this process when its scheduler has every task final.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any, cast

import anyio

from ._engine import PYTHON, _Group, _python_timeout
from ._stores._encode import json_encoder
from ._stores.redis_share import decode_outcomes
from .core._events import Event, EventKind
from .core._scheduler import CANCELLED, COMPLETED, FAILED, SKIPPED
from .core.errors import GleitzeitError, error_from_dict, error_to_dict

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ._engine import Engine, Run, _Outcome
    from ._stores.redis_share import RedisCoordinator

__all__ = ["run_shared"]

log = logging.getLogger("gleitzeit.engine")

_FINAL = (COMPLETED, FAILED, SKIPPED, CANCELLED)
#: Seconds between looks for tasks of processes whose heartbeat lapsed.
RECLAIM_EVERY = 1.0
#: Seconds the poller waits after a read that claimed nothing.
GATHER = 0.003
#: The same while this process's own script calls keep claiming tasks.
BUSY_GATHER = 0.02


class _Local:
    """Hands a task's outcome (from ``Engine._attempts``) to the shared inbox."""

    def __init__(self, inbox: MemoryObjectSendStream[tuple[Any, ...]]) -> None:
        self.inbox = inbox

    def send_nowait(self, item: Any) -> None:
        self.inbox.send_nowait(("local", item))


async def _poller(
    run: Run, coord: RedisCoordinator, inbox: MemoryObjectSendStream[tuple[Any, ...]]
) -> None:
    """Claim tasks while slots are free and deliver every outcome to the inbox."""
    next_reclaim = 0.0
    while True:
        now = time.monotonic()
        reclaim = now >= next_reclaim
        if reclaim:
            next_reclaim = now + RECLAIM_EVERY
        # The free slots are reserved while this claims (a script recording
        # meanwhile claims only beyond them: no more than max_concurrent held).
        coord.reserved = max(0, run.max_concurrent - coord.held)
        try:
            claims, outs = await coord.next(coord.reserved, reclaim, wait=False)
        finally:
            coord.reserved = 0
        coord.held += len(claims)
        # A script call could not claim for the reservation: claim again now.
        again, coord.missed = coord.missed and not claims, False
        if not claims and not outs and not again:
            _, outs = await coord.next(0, False, wait=True)  # wait for an outcome
        # Outcomes first: a claimed task's dependencies' results come with them.
        for fields in outs:
            inbox.send_nowait(("out", fields))
        for entry, i in claims:
            inbox.send_nowait(("claim", i, entry))
        if again:
            continue
        if not claims:
            # Nothing to claim: let outcomes gather a moment rather than waking
            # for each one (a chain run elsewhere would cost a read per step);
            # longer while the loop claims for itself, recording its outcomes
            # (it wakes this one when a script call of its gets no task).
            coord.idle = anyio.Event()
            with anyio.move_on_after(BUSY_GATHER if coord.busy else GATHER):
                await coord.idle.wait()


async def run_shared(engine: Engine, run: Run, coord: RedisCoordinator, tg: TaskGroup) -> None:
    """Run this process's share of ``run`` until every task is final."""
    send, inbox = anyio.create_memory_object_stream[tuple[Any, ...]](math.inf)
    # Engine._attempts sends its one outcome with send_nowait: into the inbox.
    local = cast("MemoryObjectSendStream[Any]", _Local(send))
    held: dict[int, str] = {}
    provider_of = engine.registry.get
    with send, inbox, _gc_frozen():
        await _serve(engine, run, coord, tg, inbox, send, local, held, provider_of)


@contextlib.contextmanager
def _gc_frozen() -> Iterator[None]:
    """Keep the objects alive now (the workflow, above all) out of the cyclic GC.

    A process that just built a big run would otherwise pause for a full
    collection over all of it early in the run (70 ms for 10,000 tasks), which
    a process that joins a run pays right when it should be taking tasks.
    Objects made during the run are collected as usual. The freeze is undone
    at the end unless something else had frozen objects before.
    """
    mine = gc.get_freeze_count() == 0
    gc.freeze()
    try:
        yield
    finally:
        if mine:
            gc.unfreeze()


async def _serve(
    engine: Engine,
    run: Run,
    coord: RedisCoordinator,
    tg: TaskGroup,
    inbox: MemoryObjectReceiveStream[tuple[Any, ...]],
    send: MemoryObjectSendStream[tuple[Any, ...]],
    local: MemoryObjectSendStream[Any],
    held: dict[int, str],
    provider_of: Any,
) -> None:

    sched = run.sched
    state = sched.state
    plan = run.plan
    ids, methods, retries = plan.ids, plan.methods, plan.retries
    dep_start, dep_index = plan.dep_start, plan.dep_index
    # Claimed tasks whose dependencies' outcomes have not reached this process
    # yet (they are recorded, and on their way through the outcome stream).
    parked: dict[int, str] = {}
    finished: list[_Outcome] = []
    stale: list[str] = []
    # Inline python code runs in groups, as on the local path (compiled once
    # per source, one output capture per group): see Engine._loop.
    python = provider_of(PYTHON)
    program_of = getattr(python, "inline_program", None)
    if getattr(python, "run_programs", None) is None:
        program_of = None
    params_of, needs_subst = plan.params, run.needs_subst
    timeouts, isolations, isolation = plan.timeouts, plan.isolations, engine.isolation
    group = _Group()

    def grouped(i: int) -> bool:
        """Put inline python task ``i`` into the group (False: it takes the general way)."""
        params = params_of[i]
        if needs_subst[i]:
            try:
                params = engine._params(run, i)
            except GleitzeitError as exc:
                finished.append((i, None, exc, 1, time.time()))
                return True
        job = program_of(params) if program_of is not None else None
        if job is None:
            return False
        timeout = timeouts.get(i)
        group.indexes.append(i)
        group.ids.append(ids[i])
        group.programs.append(job[0])
        group.argses.append(job[1])
        group.timeouts.append(_python_timeout(params) if timeout is None else timeout)
        return True

    def run_group() -> None:
        """Run the grouped tasks; their outcomes join ``finished`` (with start times)."""
        if group.indexes:
            engine._run_group(run, python, group, False, finished)

    def start(i: int, entry: str) -> None:
        if state[i] in _FINAL or i in held or i in parked:
            stale.append(entry)  # done already, or a second copy
            coord.held -= 1
            return
        if any(state[d] != COMPLETED for d in dep_index[dep_start[i] : dep_start[i + 1]]):
            parked[i] = entry
            return
        held[i] = entry
        sched.take(i)
        method = methods[i]
        if (
            program_of is not None
            and method == PYTHON
            and i not in retries
            and (isolations.get(i) or isolation) == "inline"
            and grouped(i)
        ):
            return
        provider = provider_of(method)
        if i not in retries and provider is not None:
            try:
                call = engine.call_for(run, i)
            except GleitzeitError as exc:
                finished.append((i, None, exc, 1, time.time()))
                return
            if provider.runs_inline(call):
                if engine.listeners:
                    engine._notice(run, _started(run, ids[i]))
                finished.append(engine._run_inline(provider, call, i, time.time()))
                return
            tg.start_soon(engine._attempts, run, i, local, call)
        else:
            tg.start_soon(engine._attempts, run, i, local, None)

    def unpark() -> None:
        ready = [
            i
            for i in parked
            if all(state[d] == COMPLETED for d in dep_index[dep_start[i] : dep_start[i + 1]])
        ]
        for i in ready:
            start(i, parked.pop(i))

    me = coord.me
    quiet = not engine.listeners
    results, errors, complete = run.results, run.errors, sched.complete

    def completed(indexes: list[bytes], payloads: list[Any]) -> None:
        """Apply a batch of completions another process recorded (no events to tell)."""
        for raw, payload in zip(indexes, payloads, strict=True):
            i = int(raw)
            if state[i] < COMPLETED:  # not final here yet
                tid = ids[i]
                results[tid] = payload
                if errors:
                    errors.pop(tid, None)
                complete(i)

    async with anyio.create_task_group() as inner:
        inner.start_soon(_poller, run, coord, send)
        while not sched.finished:
            # Outcomes to record first (those of tasks the last script call
            # handed over): do not wait, just take what has come meanwhile.
            batch = [] if finished or stale else [await inbox.receive()]
            while True:
                try:
                    batch.append(inbox.receive_nowait())
                except anyio.WouldBlock:
                    break
            for msg in batch:
                kind = msg[0]
                if kind == "claim":
                    start(msg[1], msg[2])
                elif kind == "local":
                    if msg[1][0] >= 0:
                        finished.append(msg[1])
                elif kind == "out":
                    fields = msg[1]
                    if quiet and fields[b"k"] == b"b" and b"f" not in fields[b"s"]:
                        if fields[b"c"] != me:  # completions only, nobody listening
                            completed(fields[b"i"].split(b","), json.loads(fields[b"p"]))
                    else:
                        for outcome in decode_outcomes(fields, me):
                            _apply_outcome(engine, run, outcome)
            if parked:
                unpark()
            run_group()
            # Record outcomes; the script hands back newly ready tasks at once
            # (a chain moves on without waiting for the poller). Those tasks'
            # outcomes are recorded in the next round, after a look at the
            # inbox (a cancellation from elsewhere ends a run of them).
            if stale:
                await coord.ack(stale)
                stale.clear()
            if finished:
                done, finished[:] = list(finished), []
                claims = await _complete(engine, run, coord, held, done)
                for entry, i in claims:
                    start(i, entry)
                if parked:
                    unpark()
                run_group()
            await engine._flush(run)
        await coord.wake()  # the poller may be waiting for outcomes: end its wait now
        inner.cancel_scope.cancel()


def _started(run: Run, task_id: str) -> Event:
    return Event(
        kind=EventKind.TASK_STARTED,
        workflow_id=run.id,
        task_id=task_id,
        at=time.time(),
        attempt=1,
    )


async def _complete(
    engine: Engine,
    run: Run,
    coord: RedisCoordinator,
    held: dict[int, str],
    finished: list[_Outcome],
) -> list[tuple[str, int]]:
    """Record this process's outcomes, apply those recorded, claim what became ready."""
    ids = run.plan.ids
    to_json = json_encoder()  # one encoder for the batch
    rows = []
    payloads: list[tuple[str, int, Any, tuple[float, int]]] = []
    for i, result, error, attempts, start in finished:
        tid = ids[i]
        if error is None:
            rows.append((held.pop(i, ""), i, tid, True, to_json(result), start, attempts))
            payloads.append(("completed", i, result, (start, attempts)))
        else:
            error.data.setdefault("task_id", tid)
            error.data["workflow_id"] = run.id
            run.errors.setdefault(tid, error)  # keeps its class and traceback here
            as_dict = error_to_dict(error)
            rows.append((held.pop(i, ""), i, tid, False, to_json(as_dict), start, attempts))
            payloads.append(("failed", i, as_dict, (start, attempts)))
    coord.held -= len(rows)
    free = max(0, run.max_concurrent - coord.held - coord.reserved)
    if coord.reserved:
        coord.missed = True  # the poller claims what this call could not
    coord.held += free  # reserved: the poller claims meanwhile only beyond them
    try:
        recorded, claims = await coord.complete(rows, free)
    finally:
        coord.held -= free
    coord.held += len(claims)
    coord.busy = bool(claims)
    if not claims:
        coord.idle.set()  # the poller looks for tasks (and outcomes) at once
    refused = []
    for flag, outcome in zip(recorded, payloads, strict=True):
        if flag:  # recorded by this call: apply it now (its stream copy is skipped)
            _apply_outcome(engine, run, outcome, remote=False)
        else:
            refused.append(outcome[1])
    if refused:
        # Final already: recorded by another process (its stream entry brings
        # it too), or by this one in a call whose reply was lost to a dropped
        # connection and retried (this process skips its own stream entries).
        # Either way, apply what was recorded.
        tids = [ids[i] for i in refused]
        for i, (status, payload) in zip(refused, await coord.recorded(tids), strict=True):
            if status in ("completed", "failed"):
                _apply_outcome(engine, run, (status, i, payload, None), remote=False)
    return claims


def _apply_outcome(
    engine: Engine,
    run: Run,
    outcome: tuple[str, int, Any, tuple[float, int] | None],
    *,
    remote: bool = True,
) -> None:
    """Apply one outcome (another process's from the stream, or this one's) to the run.

    An outcome recorded elsewhere carries its attempt's start: listeners here
    hear that task's start too, right before its outcome.
    """
    kind, i, payload, begun = outcome
    if kind == "x":  # cancelled by another process: cancel here too
        run.cancel_requested = True
        if run.scope is not None:
            run.scope.cancel()
        return
    sched = run.sched
    if i < 0 or sched.state[i] in _FINAL:
        return
    ids = run.plan.ids
    tid = ids[i]
    now = time.time()
    if remote and begun is not None and engine.listeners:
        engine._notice(
            run,
            Event(
                kind=EventKind.TASK_STARTED,
                workflow_id=run.id,
                task_id=tid,
                at=begun[0],
                attempt=begun[1],
            ),
        )
    if kind == "completed":
        run.results[tid] = payload
        run.errors.pop(tid, None)
        sched.complete(i)
        if engine.listeners:
            engine._notice(
                run,
                Event(
                    kind=EventKind.TASK_COMPLETED,
                    workflow_id=run.id,
                    task_id=tid,
                    at=now,
                    result=payload,
                    **_attempt_of(begun),
                ),
            )
        return
    error = run.errors.get(tid) or error_from_dict(payload)
    run.errors[tid] = error
    if run.error is None:
        run.error = error
    skipped = sched.fail(i)
    if engine.listeners:
        engine._notice(
            run,
            Event(
                kind=EventKind.TASK_FAILED,
                workflow_id=run.id,
                task_id=tid,
                at=now,
                error=payload,
                **_attempt_of(begun),
            ),
        )
    run.pending_events.extend(
        Event(
            kind=EventKind.TASK_SKIPPED,
            workflow_id=run.id,
            task_id=ids[j],
            at=now,
        )
        for j in skipped
    )


def _attempt_of(begun: tuple[float, int] | None) -> dict[str, Any]:
    """An outcome event's attempt fields, when the outcome says when it began."""
    return {} if begun is None else {"started_at": begun[0], "attempt": begun[1]}
