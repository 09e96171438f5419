"""The durable stores' writer thread: one per store, batching, errors, shutdown."""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from gleitzeit import load_workflow
from gleitzeit._stores.journal import JournalStore, read_journal
from gleitzeit._stores.sqlite import SqliteStore
from gleitzeit.core._events import Event, EventKind
from gleitzeit.core.errors import ErrorCode, PersistenceError

if TYPE_CHECKING:
    from pathlib import Path

    from gleitzeit._stores import Store

pytestmark = pytest.mark.anyio

TASKS = 4


def _store(kind: str, tmp_path: Path, **kw: Any) -> Store:
    if kind == "journal":
        return JournalStore(tmp_path / "j.jsonl", **kw)
    return SqliteStore(tmp_path / "g.db", **kw)


def _submitted(name: str) -> Event:
    workflow = load_workflow(
        {
            "name": name,
            "tasks": [
                {"name": f"t{i}", "method": "python/execute", "params": {"code": "result = 1"}}
                for i in range(TASKS)
            ],
        }
    )
    return Event(
        kind=EventKind.WORKFLOW_SUBMITTED, workflow_id=workflow.id, at=1.0, workflow=workflow
    )


def _failed(wid: str, task: int, n: int) -> Event:
    """Attempt ``n`` of a task failed: a later attempt's failure replaces it."""
    return Event(
        kind=EventKind.TASK_FAILED,
        workflow_id=wid,
        task_id=f"t{task}",
        at=2.0 + n,
        attempt=n,
        error={"n": n},
    )


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("gleitzeit-")]


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
async def test_one_writer_thread_per_store_gone_after_aclose(kind: str, tmp_path: Path) -> None:
    """open() starts exactly one writer thread; aclose() joins it (and nothing leaks)."""
    before = _writer_threads()
    store = _store(kind, tmp_path)
    await store.open()
    try:
        started = [t for t in _writer_threads() if t not in before]
        assert len(started) == 1
        assert started[0].name.startswith(f"gleitzeit-{kind}-writer")
        for i in range(20):  # many writes: still that one thread
            await store.record([_submitted(f"w{i}")])
        assert [t for t in _writer_threads() if t not in before] == started
    finally:
        await store.aclose()
    assert not started[0].is_alive()
    assert _writer_threads() == before
    with pytest.raises(PersistenceError) as info:
        await store.record([_submitted("late")])
    assert info.value.code == ErrorCode.SYSTEM_NOT_INITIALIZED


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
async def test_many_concurrent_records_are_all_durable_and_in_order(
    kind: str, tmp_path: Path
) -> None:
    """Concurrent record() calls (batched by the writer) all land, each in its order."""
    workflows = 40
    rounds = 5
    store = _store(kind, tmp_path)
    await store.open()
    ids: list[str] = []

    async def writer(i: int) -> None:
        submitted = _submitted(f"w{i}")
        ids.append(submitted.workflow_id)
        await store.record([submitted])
        for n in range(1, rounds + 1):  # later values overwrite earlier ones
            for task in range(TASKS):
                await store.record([_failed(submitted.workflow_id, task, n)])

    try:
        async with anyio.create_task_group() as tg:
            for i in range(workflows):
                tg.start_soon(writer, i)
    finally:
        await store.aclose()

    reopened = _store(kind, tmp_path)
    await reopened.open()
    try:
        assert len(await reopened.list_runs(1000)) == workflows
        for wid in ids:
            run = await reopened.load(wid)
            assert run is not None
            assert run.errors == {f"t{t}": {"n": rounds} for t in range(TASKS)}
    finally:
        await reopened.aclose()
    if kind == "journal":  # the file itself keeps every record, in each caller's order
        events, _, torn = read_journal(tmp_path / "j.jsonl")
        assert not torn
        assert len(events) == workflows * (1 + rounds * TASKS)
        seen: dict[tuple[str, str | None], int] = {}
        for e in events:
            if e.kind is EventKind.TASK_FAILED:
                assert e.error is not None
                key = (e.workflow_id, e.task_id)
                assert e.error["n"] == seen.get(key, 0) + 1
                seen[key] = e.error["n"]


async def test_a_write_error_in_the_writer_thread_is_a_persistence_error(tmp_path: Path) -> None:
    """sqlite locked by another connection: the writer's error reaches record()."""
    store = SqliteStore(tmp_path / "g.db", busy_timeout=0.05)
    await store.open()
    other = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    try:
        first = _submitted("first")
        await store.record([first])
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        with pytest.raises(PersistenceError) as info:
            await store.record([_failed(first.workflow_id, 0, 1)])
        assert info.value.code == ErrorCode.PERSISTENCE_TRANSACTION_FAILED
        assert info.value.data["sqlite_error"].startswith("SQLITE_BUSY")
        assert "locked by another process" in str(info.value)
        other.execute("ROLLBACK")
        # The writer is still serving: the next write and a read go through.
        await store.record([_failed(first.workflow_id, 0, 2)])
        run = await store.load(first.workflow_id)
        assert run is not None
        assert run.errors == {"t0": {"n": 2}}
    finally:
        other.close()
        await store.aclose()


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
async def test_a_cancelled_record_still_completes(kind: str, tmp_path: Path) -> None:
    """Cancelling the caller does not cut a write short: it is durable afterwards."""
    store = _store(kind, tmp_path)
    await store.open()
    submitted = _submitted("w")
    try:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.record([submitted])
            returned = True  # the write is waited for, shielded: it returns
        assert returned
        assert await store.load(submitted.workflow_id) is not None  # and is applied
    finally:
        await store.aclose()
    reopened = _store(kind, tmp_path)
    await reopened.open()
    try:
        assert await reopened.load(submitted.workflow_id) is not None
    finally:
        await reopened.aclose()


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
async def test_aclose_drains_queued_writes(kind: str, tmp_path: Path) -> None:
    """Writes still queued when aclose() starts are written before the thread ends."""
    store = _store(kind, tmp_path)
    await store.open()
    events = [_submitted(f"w{i}") for i in range(30)]
    queued: list[str] = []
    done: list[str] = []

    async def record(event: Event) -> None:
        queued.append(event.workflow_id)  # record() enqueues before its first wait
        await store.record([event])
        done.append(event.workflow_id)

    async with anyio.create_task_group() as tg:
        for event in events:
            tg.start_soon(record, event)
        while len(queued) < len(events):
            await anyio.lowlevel.checkpoint()
        await store.aclose()  # at once: some writes are still queued
    assert sorted(done) == sorted(queued)
    reopened = _store(kind, tmp_path)
    await reopened.open()
    try:
        assert len(await reopened.list_runs(100)) == len(events)
    finally:
        await reopened.aclose()


async def test_a_compaction_queued_behind_writes_keeps_them(tmp_path: Path) -> None:
    """The journal's replayed state follows the file in the writer thread, so a
    compaction queued right behind writes snapshots them too."""
    store = JournalStore(tmp_path / "j.jsonl")
    await store.open()
    events = [_submitted(f"w{i}") for i in range(30)]
    queued: list[str] = []

    async def record(event: Event) -> None:
        queued.append(event.workflow_id)  # record() enqueues before its first wait
        await store.record([event])

    try:
        async with anyio.create_task_group() as tg:
            for event in events:
                tg.start_soon(record, event)
            while len(queued) < len(events):
                await anyio.lowlevel.checkpoint()
            await store.compact()  # queued behind every one of those writes
        assert len(await store.list_runs(100)) == len(events)
    finally:
        await store.aclose()
    replayed, _, _ = read_journal(tmp_path / "j.jsonl")
    assert {e.workflow_id for e in replayed} == {e.workflow_id for e in events}
