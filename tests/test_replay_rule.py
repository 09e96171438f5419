"""One replay rule for every store: each durable store against ``apply_event``.

Random sequences of events (tasks starting, finishing, failing, runs
restarting and finishing) go into a store; what it loads back must equal what
:func:`gleitzeit._stores._state.apply_event` makes of the same events.
"""

from __future__ import annotations

import itertools
import sqlite3
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from gleitzeit._loader import load_workflow
from gleitzeit._stores import apply_event
from gleitzeit._stores._state import (
    Completions,
    Record,
    StoredRun,
    apply_record,
    as_events,
    snapshot_events,
)
from gleitzeit._stores.journal import JournalStore
from gleitzeit._stores.redis import RedisStore
from gleitzeit._stores.sqlite import SqliteStore
from gleitzeit.core._events import Event, EventKind

if TYPE_CHECKING:
    from pathlib import Path

    from gleitzeit._stores import Store

WORKFLOW = load_workflow(
    {
        "name": "replay",
        "tasks": [
            {"name": f"t{i}", "method": "python/execute", "params": {"code": "result = 1"}}
            for i in range(4)
        ],
    }
)
TASKS = [t.id for t in WORKFLOW.tasks]
ERROR = {"type": "TaskError", "code": -29002, "message": "boom", "data": {"n": [1, 2.5]}}

_task_kinds = st.sampled_from(
    [
        EventKind.TASK_STARTED,
        EventKind.TASK_COMPLETED,
        EventKind.TASK_FAILED,
        EventKind.TASK_SKIPPED,
        EventKind.TASK_CANCELLED,
    ]
)


@st.composite
def _step(draw: st.DrawFn) -> dict[str, Any]:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return {"kind": EventKind.WORKFLOW_STARTED}
    if choice == 1:
        status = draw(st.sampled_from(["completed", "failed", "cancelled"]))
        error = draw(st.sampled_from([None, ERROR]))
        return {"kind": EventKind.WORKFLOW_FINISHED, "status": status, "error": error}
    kind = draw(_task_kinds)
    step: dict[str, Any] = {"kind": kind, "task_id": draw(st.sampled_from(TASKS))}
    if kind is EventKind.TASK_COMPLETED:
        step["result"] = {"result": draw(st.integers(-5, 5)), "out": [], "nested": {"k": []}}
    elif kind is EventKind.TASK_FAILED:
        step["error"] = ERROR
    if kind in (EventKind.TASK_COMPLETED, EventKind.TASK_FAILED):
        step["started_at"] = draw(st.sampled_from([None, 1.5]))
    if kind is not EventKind.TASK_SKIPPED and kind is not EventKind.TASK_CANCELLED:
        step["attempt"] = draw(st.integers(0, 2))
    return step


_batches = st.lists(st.lists(_step(), min_size=1, max_size=6), min_size=1, max_size=6)


def _events(batches: list[list[dict[str, Any]]]) -> list[list[Event]]:
    clock = itertools.count(2)
    wid = WORKFLOW.id
    out = [[Event(kind=EventKind.WORKFLOW_SUBMITTED, workflow_id=wid, at=1.0, workflow=WORKFLOW)]]
    out.extend(
        [Event(workflow_id=wid, at=float(next(clock)), **step) for step in batch]
        for batch in batches
    )
    return out


def _fields(run: StoredRun | None) -> tuple[Any, ...]:
    assert run is not None
    return (
        run.workflow,
        run.status,
        run.task_status,
        run.results,
        run.errors,
        run.error,
        run.created_at,
        run.started_at,
        run.finished_at,
    )


async def _stored(make: Any, batches: list[list[Event]]) -> StoredRun | None:
    store: Store = make()
    await store.open()
    try:
        for batch in batches:
            await store.record(batch)
    finally:
        await store.aclose()
    again: Store = make()  # what a new process reads back
    await again.open()
    try:
        return await again.load(WORKFLOW.id)
    finally:
        await again.aclose()


def _expected(batches: list[list[Event]]) -> StoredRun | None:
    runs: dict[str, StoredRun] = {}
    for batch in batches:
        for event in batch:
            apply_event(runs, event)
    return runs.get(WORKFLOW.id)


_counter = itertools.count()


@settings(max_examples=60)
@given(_batches)
def test_sqlite_follows_the_replay_rule(tmp_path: Path, steps: list[list[dict[str, Any]]]) -> None:
    """sqlite's SQL keeps the same state as apply_event."""
    batches = _events(steps)
    path = tmp_path / f"g{next(_counter)}.db"
    got = anyio.run(_stored, lambda: SqliteStore(path), batches)
    expected = _expected(batches)
    assert _fields(got) == _fields(expected)
    assert got is not None
    assert expected is not None
    assert got.task_times == expected.task_times


@settings(max_examples=60)
@given(_batches)
def test_journal_follows_the_replay_rule(tmp_path: Path, steps: list[list[dict[str, Any]]]) -> None:
    """The journal's replay keeps the same state as apply_event."""
    batches = _events(steps)
    path = tmp_path / f"j{next(_counter)}.jsonl"
    got = anyio.run(_stored, lambda: JournalStore(path), batches)
    expected = _expected(batches)
    assert _fields(got) == _fields(expected)
    assert got is not None
    assert expected is not None
    assert got.task_times == expected.task_times
    compacted = anyio.run(_compacted, path)
    assert compacted is not None
    assert compacted.task_status == expected.task_status
    assert compacted.results == expected.results
    assert compacted.errors == expected.errors
    assert compacted.task_times == expected.task_times


async def _compacted(path: Path) -> StoredRun | None:
    """The state of a journal after compacting it, as a new process reads it."""
    store = JournalStore(path)
    await store.open()
    try:
        await store.compact()
    finally:
        await store.aclose()
    again = JournalStore(path)
    await again.open()
    try:
        return await again.load(WORKFLOW.id)
    finally:
        await again.aclose()


@settings(max_examples=60)
@given(_batches)
def test_redis_follows_the_replay_rule(redis_url: str, steps: list[list[dict[str, Any]]]) -> None:
    """Redis's Lua script keeps the same state as apply_event."""
    batches = _events(steps)
    prefix = f"replay{next(_counter)}"
    got = anyio.run(_stored, lambda: RedisStore(redis_url, prefix=prefix), batches)
    expected = _expected(batches)
    assert _fields(got) == _fields(expected)
    assert got is not None
    assert expected is not None
    assert got.task_times == expected.task_times


def _state(events: list[Event]) -> dict[str, Any]:
    runs: dict[str, StoredRun] = {}
    for event in events:
        apply_event(runs, event)
    return attrs.asdict(runs[WORKFLOW.id], recurse=False)


@settings(max_examples=300)
@given(_batches, st.integers(0, 40))
def test_a_snapshot_stands_for_the_history_before_it(
    steps: list[list[dict[str, Any]]], cut: int
) -> None:
    """Events after a snapshot change it exactly as they change the full history.

    This is what makes journal compaction safe during a live run: every field
    of the run (new fields included) must come back from its snapshot.
    """
    events = [event for batch in _events(steps) for event in batch]
    cut = min(max(cut, 1), len(events))
    before, after = events[:cut], events[cut:]
    runs: dict[str, StoredRun] = {}
    for event in before:
        apply_event(runs, event)
    snapshot = snapshot_events(runs[WORKFLOW.id])
    assert _state(snapshot) == _state(before)
    assert _state(snapshot + after) == _state(events)


async def _compacted_between(path: Path, batches: list[list[Event]], cut: int) -> StoredRun | None:
    store = JournalStore(path)
    await store.open()
    try:
        for i, batch in enumerate(batches):
            if i == cut:
                await store.compact()
            await store.record(batch)
    finally:
        await store.aclose()
    again = JournalStore(path)
    await again.open()
    try:
        return await again.load(WORKFLOW.id)
    finally:
        await again.aclose()


@settings(max_examples=60)
@given(_batches, st.integers(1, 7))
def test_journal_compaction_at_any_point_keeps_the_state(
    tmp_path: Path, steps: list[list[dict[str, Any]]], cut: int
) -> None:
    """Compacting between any two writes, then writing on, reads back as the full history."""
    batches = _events(steps)
    path = tmp_path / f"c{next(_counter)}.jsonl"
    got = anyio.run(_compacted_between, path, batches, cut)
    assert _fields(got) == _fields(_expected(batches))


def _compact(batches: list[list[Event]]) -> list[list[Record]]:
    """The batches with each run of completions as one Completions record (the engine's
    form), dated by its first completion."""
    out: list[list[Record]] = []
    for batch in batches:
        records: list[Record] = []
        for e in batch:
            if e.kind is not EventKind.TASK_COMPLETED:
                records.append(e)
                continue
            assert e.task_id is not None
            row = (e.task_id, e.attempt, e.started_at, e.result or {})
            last = records[-1] if records else None
            if isinstance(last, Completions):
                last.rows.append(row)
            else:
                records.append(Completions(e.workflow_id, e.at, [row]))
        out.append(records)
    return out


async def _stored_steps(make: Any, batches: list[list[Record]]) -> StoredRun | None:
    store = make()
    await store.open()
    try:
        for batch in batches:
            await store.record_step(batch)
    finally:
        await store.aclose()
    again = make()
    await again.open()
    try:
        loaded: StoredRun | None = await again.load(WORKFLOW.id)
        return loaded
    finally:
        await again.aclose()


@settings(max_examples=60)
@given(_batches)
def test_completions_records_follow_the_replay_rule(
    tmp_path: Path, steps: list[list[dict[str, Any]]]
) -> None:
    """A step's completions recorded as Completions rows (the engine's fast path) give
    every store, and apply_record, the state apply_event makes of the same events."""
    compact = _compact(_events(steps))
    expected_batches = [as_events(batch) for batch in compact]
    expected = _expected(expected_batches)
    runs: dict[str, StoredRun] = {}
    for batch in compact:
        for record in batch:
            apply_record(runs, record)
    n = next(_counter)
    for got in (
        runs.get(WORKFLOW.id),
        anyio.run(_stored_steps, lambda: JournalStore(tmp_path / f"s{n}.jsonl"), compact),
        anyio.run(_stored_steps, lambda: SqliteStore(tmp_path / f"s{n}.db"), compact),
    ):
        assert _fields(got) == _fields(expected)
        assert got is not None
        assert expected is not None
        assert got.task_times == expected.task_times
    # sqlite's compatibility view lists the completed tasks as completed.
    db = sqlite3.connect(tmp_path / f"s{n}.db")
    try:
        viewed = db.execute("SELECT task_id FROM tasks WHERE status = 'completed'").fetchall()
    finally:
        db.close()
    assert expected is not None
    assert {tid for (tid,) in viewed} == set(expected.results)
