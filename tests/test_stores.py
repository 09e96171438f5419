"""Tests for the stores: the shared battery, then each store's own promises."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from gleitzeit import GleitzeitClient, WorkflowStatus
from gleitzeit._stores.journal import JournalStore, read_journal
from gleitzeit._stores.memory import MemoryStore
from gleitzeit._stores.sqlite import SCHEMA_VERSION, SqliteStore
from gleitzeit.core._events import Event, EventKind
from gleitzeit.core.errors import ErrorCode, PersistenceError
from gleitzeit.testing import check_store

pytestmark = pytest.mark.anyio

HELLO = Path(__file__).parents[1] / "examples" / "hello.yaml"


async def test_memory_store_battery() -> None:
    """The memory store passes the battery (not durable)."""
    await check_store(MemoryStore, durable=False)


async def test_journal_store_battery(tmp_path: Path) -> None:
    """The journal passes the battery, across reopening."""
    await check_store(lambda: JournalStore(tmp_path / "j.jsonl"), durable=True)


async def test_journal_fsync_battery(tmp_path: Path) -> None:
    """The journal with fsync durability passes too."""
    await check_store(lambda: JournalStore(tmp_path / "j.jsonl", durability="fsync"), durable=True)


async def test_sqlite_store_battery(tmp_path: Path) -> None:
    """sqlite passes the battery, across reopening."""
    await check_store(lambda: SqliteStore(tmp_path / "g.db"), durable=True)


@pytest.mark.parametrize("persistence", ["journal", "sqlite"])
async def test_state_survives_the_client(tmp_path: Path, persistence: str) -> None:
    """A new client sees status, results and the list; resume returns the same results."""
    path = tmp_path / "store"
    async with GleitzeitClient(persistence=persistence, db_path=path, isolation="inline") as c:
        results = await c.run_workflow(HELLO)
        (listed,) = await c.list_workflows()
    async with GleitzeitClient(persistence=persistence, db_path=path) as c:
        status = await c.get_workflow_status(listed.id)
        assert status is not None
        assert (status.status, status.completed_tasks, status.total_tasks) == (
            WorkflowStatus.COMPLETED,
            3,
            3,
        )
        assert await c.get_task_result(listed.id, "Summary") == results["Summary"]
        assert await c.wait_for_workflow(listed.id) == results
        assert await c.resume_workflow(listed.id) == results
        assert [w.id for w in await c.list_workflows()] == [listed.id]


async def _write_run(path: Path) -> bytes:
    async with GleitzeitClient(persistence="journal", db_path=path, isolation="inline") as c:
        await c.run_workflow(HELLO)
    return path.read_bytes()


async def test_journal_lines_are_versioned_records(tmp_path: Path) -> None:
    """Every line is one JSON object with a version `v`: an event with its kind (v1),
    or one task's completion in compact form (v2)."""
    data = await _write_run(tmp_path / "j.jsonl")
    lines = data.decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["v"] for r in records} == {1, 2}
    kinds = [r["kind"] if r["v"] == 1 else "task_completed" for r in records]
    assert kinds[0] == "workflow_submitted"
    assert kinds[-1] == "workflow_finished"
    assert kinds.count("task_completed") == 3
    completed = [r for r in records if r["v"] == 2]
    assert {r["c"][0] for r in completed} == {"Numbers", "Greeting", "Summary"}
    for r in completed:
        _, attempt, started, result = r["c"]
        assert (attempt, r["w"]) == (1, records[0]["workflow_id"])
        assert started <= r["at"]
        assert result["success"] is True


async def test_journal_of_an_earlier_version_loads(tmp_path: Path) -> None:
    """A journal written before compact completions (only v1 event lines) loads, resumes
    without rerunning its completed tasks, and takes new records after its old ones."""
    from gleitzeit import load_workflow
    from gleitzeit._serde import event_to_record

    doc = {
        "id": "old-run",
        "name": "old",
        "tasks": [
            {"name": "a", "method": "python/execute", "params": {"code": "result = 1"}},
            {
                "name": "b",
                "method": "python/execute",
                "params": {"code": "result = ${a.result} + 1"},
                "dependencies": ["a"],
            },
        ],
    }
    wf = load_workflow(doc)
    events = [
        Event(kind=EventKind.WORKFLOW_SUBMITTED, workflow_id=wf.id, at=1.0, workflow=wf),
        Event(kind=EventKind.WORKFLOW_STARTED, workflow_id=wf.id, at=2.0),
        Event(kind=EventKind.TASK_STARTED, workflow_id=wf.id, at=2.1, task_id="a", attempt=1),
        Event(
            kind=EventKind.TASK_COMPLETED,
            workflow_id=wf.id,
            at=2.2,
            task_id="a",
            attempt=1,
            result={"result": 41, "stdout": "", "stderr": "", "success": True},
        ),
        Event(kind=EventKind.TASK_STARTED, workflow_id=wf.id, at=2.3, task_id="b", attempt=1),
    ]
    path = tmp_path / "old.jsonl"
    path.write_text(
        "".join(json.dumps(event_to_record(e), separators=(",", ":")) + "\n" for e in events)
    )
    old = path.read_bytes()
    async with GleitzeitClient(persistence="journal", db_path=path, isolation="inline") as c:
        stored = await c._store.load(wf.id)
        assert stored is not None
        assert stored.task_status == {"a": "completed", "b": "running"}
        assert stored.task_times["a"][0][:2] == (2.1, 2.2)
        results = await c.resume_workflow(wf.id)
    assert results["a"]["result"] == 41  # kept, not run again
    assert results["b"]["result"] == 42
    data = path.read_bytes()
    assert data.startswith(old)
    assert any(json.loads(line)["v"] == 2 for line in data[len(old) :].splitlines())


async def test_torn_last_line_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A record cut short by a crash is dropped with a warning and cut off the file."""
    path = tmp_path / "j.jsonl"
    data = await _write_run(path)
    path.write_bytes(data[:-10])
    store = JournalStore(path)
    with caplog.at_level(logging.WARNING, logger="gleitzeit"):
        await store.open()
    await store.aclose()
    assert "torn" in caplog.text
    assert path.read_bytes() == data[: data.rfind(b"\n", 0, len(data) - 10) + 1]


async def test_corruption_in_the_middle_names_the_line(tmp_path: Path) -> None:
    """A bad line that is not the last is PERSISTENCE_INTEGRITY_ERROR naming it."""
    path = tmp_path / "j.jsonl"
    lines = (await _write_run(path)).split(b"\n")
    lines[2] = b"{not json"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(PersistenceError) as info:
        await JournalStore(path).open()
    assert info.value.code == ErrorCode.PERSISTENCE_INTEGRITY_ERROR
    assert info.value.data["line"] == 3
    assert "line 3" in info.value.message


async def test_compaction_keeps_state_and_shrinks(tmp_path: Path) -> None:
    """compact() rewrites the journal atomically into its current state."""
    path = tmp_path / "j.jsonl"
    before_bytes = await _write_run(path)
    store = JournalStore(path)
    await store.open()
    before = {
        r.workflow.id: (r.status, r.task_status, r.results) for r in await store.list_runs(10)
    }
    await store.compact()
    await store.aclose()
    assert len(path.read_bytes()) <= len(before_bytes)
    store = JournalStore(path)
    await store.open()
    after = {r.workflow.id: (r.status, r.task_status, r.results) for r in await store.list_runs(10)}
    await store.aclose()
    assert after == before


async def test_journal_is_locked_to_one_process(tmp_path: Path) -> None:
    """A second open of the same journal is PERSISTENCE_TRANSACTION_FAILED."""
    first = JournalStore(tmp_path / "j.jsonl")
    await first.open()
    try:
        with pytest.raises(PersistenceError) as info:
            await JournalStore(tmp_path / "j.jsonl").open()
        assert info.value.code == ErrorCode.PERSISTENCE_TRANSACTION_FAILED
    finally:
        await first.aclose()


DISK_FULL_SCRIPT = """
import resource, signal, sys, trio
from gleitzeit import GleitzeitClient, PersistenceError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
path, persistence, hello = sys.argv[1], sys.argv[2], sys.argv[3]
big = {"name": "big", "tasks": [{"name": f"t{i}", "method": "python/execute",
       "params": {"code": "result = 'x' * 5000"}} for i in range(50)]}
async def main():
    async with GleitzeitClient(persistence=persistence, db_path=path, isolation="inline") as c:
        await c.run_workflow(hello)
        import os
        size = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, resource.RLIM_INFINITY))
        try:
            await c.run_workflow(big)
        except PersistenceError as e:
            print(int(e.code), e.message)
trio.run(main)
"""


@pytest.mark.parametrize("persistence", ["journal", "sqlite"])
async def test_disk_full_is_a_write_error_and_loses_nothing(
    tmp_path: Path, persistence: str
) -> None:
    """A full disk (a file size limit here) is PERSISTENCE_WRITE_FAILED; results
    recorded before it are intact."""
    import subprocess
    import sys

    path = tmp_path / "store"
    out = subprocess.run(
        [sys.executable, "-c", DISK_FULL_SCRIPT, str(path), persistence, str(HELLO)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.stdout.startswith(str(int(ErrorCode.PERSISTENCE_WRITE_FAILED))), out
    assert "disk is full" in out.stdout or "full" in out.stdout
    async with GleitzeitClient(persistence=persistence, db_path=path) as c:
        listed = await c.list_workflows()
        hello = next(w for w in listed if w.name == "Hello gleitzeit")
        assert hello.status is WorkflowStatus.COMPLETED
        summary = await c.get_task_result(hello.id, "Summary")
        assert summary is not None
        assert summary["result"]["total"] == 55


@pytest.mark.parametrize("persistence", ["journal", "sqlite"])
async def test_unusable_path_is_a_connection_error(tmp_path: Path, persistence: str) -> None:
    """A path under a regular file cannot be created: PERSISTENCE_CONNECTION_FAILED."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(PersistenceError) as info:
        async with GleitzeitClient(persistence=persistence, db_path=tmp_path / "file" / "db"):
            pass
    assert info.value.code in (
        ErrorCode.PERSISTENCE_CONNECTION_FAILED,
        ErrorCode.PERSISTENCE_WRITE_FAILED,
    )
    assert str(tmp_path / "file") in info.value.message


async def test_sqlite_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    """A new database gets the current schema version and WAL mode."""
    path = tmp_path / "g.db"
    store = SqliteStore(path)
    await store.open()
    await store.aclose()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(PersistenceError, match="newer gleitzeit"):
        await SqliteStore(path).open()


async def test_sqlite_migrates_a_version_1_database(tmp_path: Path) -> None:
    """A schema-1 database (before attempt start times) is migrated on open: its runs
    and results stay readable, without times, and new runs record their times."""
    from gleitzeit import load_workflow
    from gleitzeit._serde import unstructure_workflow
    from gleitzeit._stores.sqlite import _MIGRATIONS

    old = load_workflow(
        {
            "id": "old",
            "name": "old",
            "tasks": [{"id": "a", "method": "python/execute", "params": {"code": "result = 1"}}],
        }
    )
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[0])
    db.execute(
        "INSERT INTO workflows (id, name, status, definition, total_tasks, created_at) "
        "VALUES ('old', 'old', 'completed', ?, 1, 1.0)",
        (json.dumps(unstructure_workflow(old)),),
    )
    db.execute(
        "INSERT INTO tasks (workflow_id, task_id, status, result, attempt, updated_at) "
        "VALUES ('old', 'a', 'completed', '{\"result\": 1}', 1, 2.0)"
    )
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    async with GleitzeitClient(persistence="sqlite", db_path=path, isolation="inline") as c:
        assert await c.get_task_result("old", "a") == {"result": 1}
        stored = await c._store.load("old")
        assert stored is not None
        assert stored.task_times == {}
        await c.run_workflow(
            {
                "id": "new",
                "name": "new",
                "tasks": [
                    {"name": "b", "method": "python/execute", "params": {"code": "result = 2"}}
                ],
            }
        )
        fresh = await c._store.load("new")
    assert fresh is not None
    ((start, end, status, attempt),) = fresh.task_times["b"]
    assert end is not None
    assert start <= end
    assert (status, attempt) == ("completed", 1)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()


async def test_sqlite_migrates_a_version_2_database(tmp_path: Path) -> None:
    """A schema-2 database (one upserted row per task) is migrated on open: completed
    results, times and errors stay; the run resumes without rerunning its completed
    task; completions then go to their own table and ``tasks`` still lists them."""
    from gleitzeit import load_workflow
    from gleitzeit._serde import unstructure_workflow
    from gleitzeit._stores.sqlite import _MIGRATIONS

    old = load_workflow(
        {
            "id": "old",
            "name": "old",
            "tasks": [
                {"id": "a", "method": "python/execute", "params": {"code": "result = 1"}},
                {
                    "id": "b",
                    "method": "python/execute",
                    "params": {"code": "result = ${a.result} + 1"},
                    "dependencies": ["a"],
                },
                {"id": "c", "method": "python/execute", "params": {"code": "result = 3"}},
            ],
        }
    )
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[0] + _MIGRATIONS[1])
    db.execute(
        "INSERT INTO workflows (id, name, status, definition, total_tasks, created_at, "
        "started_at, finished_at) VALUES ('old', 'old', 'failed', ?, 3, 1.0, 2.0, 3.0)",
        (json.dumps(unstructure_workflow(old)),),
    )
    db.executemany(
        "INSERT INTO tasks (workflow_id, task_id, status, result, error, attempt, updated_at, "
        "started_at) VALUES ('old', ?, ?, ?, ?, ?, ?, ?)",
        [
            ("a", "completed", '{"result": 10}', None, 1, 2.2, 2.1),
            ("c", "failed", None, '{"message": "boom"}', 2, 2.4, 2.3),
        ],
    )
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    async with GleitzeitClient(persistence="sqlite", db_path=path, isolation="inline") as c:
        stored = await c._store.load("old")
        assert stored is not None
        assert stored.task_status == {"a": "completed", "c": "failed"}
        assert stored.results == {"a": {"result": 10}}
        assert stored.errors == {"c": {"message": "boom"}}
        assert stored.task_times == {
            "a": [(2.1, 2.2, "completed", 1)],
            "c": [(2.3, 2.4, "failed", 2)],
        }
        results = await c.resume_workflow("old")
    assert results["a"] == {"result": 10}  # not run again
    assert results["b"]["result"] == 11
    assert results["c"]["result"] == 3
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    appended = [r[0] for r in db.execute("SELECT task_id FROM completions ORDER BY rowid")]
    assert appended[0] == "a"  # migrated first, the resumed run's after it
    assert sorted(appended) == ["a", "b", "c"]
    assert sorted(
        db.execute("SELECT task_id, status FROM tasks WHERE workflow_id = 'old'").fetchall()
    ) == [("a", "completed"), ("b", "completed"), ("c", "completed")]
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


async def test_sqlite_rejects_a_foreign_file(tmp_path: Path) -> None:
    """A file that is not a database is PERSISTENCE_INTEGRITY_ERROR."""
    path = tmp_path / "g.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(PersistenceError) as info:
        await SqliteStore(path).open()
    assert info.value.code == ErrorCode.PERSISTENCE_INTEGRITY_ERROR


async def test_sqlite_locked_database_loses_nothing(tmp_path: Path) -> None:
    """A lock held too long is PERSISTENCE_TRANSACTION_FAILED; recorded results stay."""
    path = tmp_path / "g.db"
    async with GleitzeitClient(persistence="sqlite", db_path=path, isolation="inline") as c:
        done = await c.run_workflow(HELLO)
        (wf,) = await c.list_workflows()
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            store = SqliteStore(path, busy_timeout=0.1)
            await store.open()
            event = Event(kind=EventKind.WORKFLOW_STARTED, workflow_id=wf.id, at=1.0)
            with pytest.raises(PersistenceError) as info:
                await store.record([event])
            await store.aclose()
            assert info.value.code == ErrorCode.PERSISTENCE_TRANSACTION_FAILED
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert await c.get_task_result(wf.id, "Summary") == done["Summary"]


async def test_two_clients_share_one_sqlite_file(tmp_path: Path) -> None:
    """Two clients writing to one database at once both finish; the file stays sound."""
    import anyio

    path = tmp_path / "g.db"
    doc = {
        "name": "many",
        "tasks": [
            {"name": f"t{i}", "method": "python/execute", "params": {"code": f"result = {i}"}}
            for i in range(200)
        ],
    }
    out: list[dict[str, object]] = []

    async def one() -> None:
        async with GleitzeitClient(
            persistence="sqlite", db_path=path, isolation="inline", max_concurrent=1
        ) as c:
            out.append(await c.run_workflow(doc))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
    assert len(out) == 2
    assert all(len(r) == 200 for r in out)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT count(*) FROM tasks WHERE status='completed'").fetchone()[0] == 400


def test_read_journal_of_missing_file(tmp_path: Path) -> None:
    """A journal that does not exist yet replays as empty."""
    assert read_journal(tmp_path / "none.jsonl") == ([], 0, False)


def test_sqlite_falls_back_to_the_journal_without_sqlite3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the sqlite3 module, persistence="sqlite" uses a journal beside db_path."""
    import sys

    monkeypatch.setitem(sys.modules, "gleitzeit._stores.sqlite", None)  # import fails
    with caplog.at_level(logging.WARNING, logger="gleitzeit"):
        client = GleitzeitClient(persistence="sqlite", db_path=tmp_path / "g.db")
    store = client._store
    assert isinstance(store, JournalStore)
    assert store.path == tmp_path / "g.jsonl"
    assert "sqlite3 module is not available" in caplog.text


@pytest.mark.parametrize("persistence", ["sqlite", "journal"])
async def test_attempt_times_are_stored(tmp_path: Path, persistence: str) -> None:
    """Completions and failures carry their attempt's start (`started_at`); a new
    client reads every finished task's (start, end, status, attempt) back, a
    retried task with its attempt number, a skipped one without times."""
    from gleitzeit.core.errors import TaskError

    tries = tmp_path / "tries"
    flaky = (
        f"import pathlib; p = pathlib.Path({str(tries)!r}); "
        "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
        "assert n >= 1, 'first attempt fails'; result = n"
    )
    wf = {
        "id": "timed",
        "name": "timed",
        "tasks": [
            {
                "name": "flaky",
                "method": "python/execute",
                "params": {"code": flaky},
                "retry": {"max_attempts": 3, "base_delay": 0.01, "jitter": False},
            },
            {
                "name": "after",
                "method": "python/execute",
                "params": {"code": "result = 1"},
                "dependencies": ["flaky"],
            },
            {"name": "bad", "method": "python/execute", "params": {"code": "raise ValueError"}},
            {
                "name": "never",
                "method": "python/execute",
                "params": {"code": "result = 1"},
                "dependencies": ["bad"],
            },
        ],
    }
    events: list[Event] = []
    path = tmp_path / "store"
    options = {"persistence": persistence, "db_path": path, "isolation": "inline"}
    async with GleitzeitClient(**options, on_event=events.extend) as c:  # type: ignore[arg-type]
        with pytest.raises(TaskError):
            await c.run_workflow(wf)
    ends = {
        e.task_id: e
        for e in events
        if e.kind in (EventKind.TASK_COMPLETED, EventKind.TASK_FAILED) and e.status is None
    }
    assert all(e.started_at is not None and e.started_at <= e.at for e in ends.values())
    async with GleitzeitClient(**options) as c:  # type: ignore[arg-type]
        stored = await c._store.load("timed")
    assert stored is not None
    times = stored.task_times
    assert set(times) == {"flaky", "after", "bad"}
    for tid, ((start, end, status, attempt),) in times.items():
        assert end is not None
        assert start <= end
        assert (start, end) == (ends[tid].started_at, ends[tid].at)
        assert status == stored.task_status[tid]
        assert attempt == (2 if tid == "flaky" else 1)
    flaky_end = times["flaky"][0].end
    assert flaky_end is not None
    assert times["after"][0].start >= flaky_end
    assert times["bad"][0].status == "failed"


async def test_sqlite_tasks_view_lists_each_task_once(tmp_path: Path) -> None:
    """Process-isolated tasks record their start (a task_states row) and then their
    completion (appended): the completion replaces the row, so the ``tasks`` view
    lists every task once, completed, with its attempt's times."""
    path = tmp_path / "g.db"
    async with GleitzeitClient(persistence="sqlite", db_path=path, isolation="process") as c:
        await c.run_workflow(HELLO)
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT task_id, status, started_at <= updated_at FROM tasks").fetchall()
        assert sorted(rows) == [
            ("Greeting", "completed", 1),
            ("Numbers", "completed", 1),
            ("Summary", "completed", 1),
        ]
        assert db.execute("SELECT count(*) FROM task_states").fetchone()[0] == 0
    finally:
        db.close()
