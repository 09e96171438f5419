"""The ``sqlite`` store (the default): one database file, WAL mode, batched transactions.

Each :meth:`SqliteStore.record` batch is one transaction, run in the store's
one long-lived writer thread (see ``_writer.py``) so the event loop never
blocks on disk; batches that are ready together share one commit, and reads
go through the same thread, in order with the writes. On a full disk
(``SQLITE_FULL``) the batch is committed in smaller pieces so what fits is
kept, and the error says how much. WAL mode with
``synchronous=NORMAL`` makes a committed batch survive a killed process
(``durability="fsync"`` switches to ``synchronous=FULL`` for power loss).
Several processes may share one file: writers queue on sqlite's lock with a
busy timeout instead of failing.

The schema is versioned (``PRAGMA user_version``) and migrated on open.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from .._serde import structure_workflow, unstructure_workflow
from ..core._events import EventKind
from ..core._models import WorkflowStatus
from ..core.errors import ErrorCode, PersistenceError
from . import LOCAL
from ._encode import json_encoder
from ._owner import RunLock
from ._state import STATUS_OF_EVENT, AttemptTime, Completions, StoredRun, as_events
from ._writer import Writer

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence

    from ..core._events import Event
    from ..core._models import Workflow
    from . import LocalCoordinator
    from ._state import Record

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

log = logging.getLogger("gleitzeit.sqlite")

T = TypeVar("T")

_MIGRATIONS: Final[tuple[str, ...]] = (
    # version 1
    """
    CREATE TABLE workflows (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        definition TEXT NOT NULL,
        total_tasks INTEGER NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        error TEXT
    );
    CREATE INDEX workflows_by_created ON workflows (created_at DESC);
    CREATE INDEX workflows_by_status ON workflows (status);
    CREATE TABLE tasks (
        workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
        task_id TEXT NOT NULL,
        status TEXT NOT NULL,
        result TEXT,
        error TEXT,
        attempt INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL,
        PRIMARY KEY (workflow_id, task_id)
    ) WITHOUT ROWID;
    CREATE INDEX tasks_by_status ON tasks (workflow_id, status);
    """,
    # version 2: when the task's recorded attempt started (the run report's timeline)
    """
    ALTER TABLE tasks ADD COLUMN started_at REAL;
    """,
    # version 3: completions are appended (no upsert per task, one index); the
    # definitions of new workflows are zlib-compressed JSON (BLOB); the
    # other task states keep their upserted row until the task completes (then
    # it is deleted); ``tasks`` becomes a view of both
    """
    ALTER TABLE tasks RENAME TO task_states;
    DROP INDEX tasks_by_status;
    CREATE TABLE completions (
        workflow_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        at REAL NOT NULL,
        started_at REAL,
        result TEXT NOT NULL
    );
    CREATE INDEX completions_by_workflow ON completions (workflow_id);
    INSERT INTO completions (workflow_id, task_id, attempt, at, started_at, result)
        SELECT workflow_id, task_id, attempt, updated_at, started_at, coalesce(result, '{}')
        FROM task_states WHERE status = 'completed' ORDER BY updated_at;
    DELETE FROM task_states WHERE status = 'completed';
    CREATE VIEW tasks AS
        SELECT workflow_id, task_id, 'completed' AS status, result, NULL AS error, attempt,
            at AS updated_at, started_at
        FROM completions
        UNION ALL
        SELECT workflow_id, task_id, status, result, error, attempt, updated_at, started_at
        FROM task_states;
    """,
)
#: The schema version this code writes.
SCHEMA_VERSION: Final = len(_MIGRATIONS)

_BUSY: Final = {"SQLITE_BUSY", "SQLITE_LOCKED"}
_FULL: Final = "SQLITE_FULL"
_IOERR: Final = "SQLITE_IOERR"
_ACCESS: Final = {"SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_AUTH"}
_CORRUPT: Final = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


def _error_name(exc: sqlite3.Error) -> str:
    """The sqlite error code's name (``SQLITE_FULL``), or ``""``."""
    return getattr(exc, "sqlite_errorname", "") or ""


def _map_error(exc: sqlite3.Error, path: Path, doing: str, **extra: Any) -> PersistenceError:
    """Map a sqlite3 error to the most specific code, by its sqlite error code."""
    name = _error_name(exc)
    base = "_".join(name.split("_")[:2])  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    data = {"backend": "sqlite", "path": str(path), "sqlite_error": name, **extra}
    if base in _BUSY:
        return PersistenceError(
            f"Cannot {doing} {path}: the database is locked by another process for too long; "
            "retry, or give each client its own db_path.",
            ErrorCode.PERSISTENCE_TRANSACTION_FAILED,
            data,
        )
    if base == _FULL:
        kept = ""
        if "events" in extra:
            kept = f" {extra['events_recorded']} of the {extra['events']} records were saved."
        return PersistenceError(
            f"Cannot {doing} {path}: the disk is full ({name}: {exc}).{kept} Free space on "
            "that disk (or move db_path to one with room), then resume the workflow.",
            ErrorCode.PERSISTENCE_WRITE_FAILED,
            data,
        )
    if base == _IOERR:
        return PersistenceError(
            f"Cannot {doing} {path}: the disk reported an I/O error ({name}: {exc}); check "
            "the disk and its free space, then resume the workflow.",
            ErrorCode.PERSISTENCE_WRITE_FAILED,
            data,
        )
    if base in _ACCESS:
        return PersistenceError(
            f"Cannot {doing} {path}: {exc}; check the path and its permissions or choose "
            "another db_path.",
            ErrorCode.PERSISTENCE_CONNECTION_FAILED,
            data,
        )
    if base in _CORRUPT:
        return PersistenceError(
            f"Cannot {doing} {path}: the file is not a healthy gleitzeit database ({exc}).",
            ErrorCode.PERSISTENCE_INTEGRITY_ERROR,
            data,
        )
    return PersistenceError(
        f"Cannot {doing} {path}: {exc}.", ErrorCode.PERSISTENCE_WRITE_FAILED, data
    )


def _pack(definition: dict[str, Any]) -> bytes:
    """A workflow definition as stored: zlib-compressed JSON (level 1).

    A definition repeats itself task after task: compressed it is ~10x
    smaller, which sqlite writes (and checkpoints) ~10x faster than it
    compresses it; a million-task definition went from 150 MB to 14 MB.
    """
    text = json.dumps(definition, ensure_ascii=False, separators=(",", ":"), default=repr)
    return zlib.compress(text.encode("utf-8", "surrogatepass"), 1)


def _unpack(stored: str | bytes) -> Any:
    """A stored definition: compressed (schema 3), or JSON text (written before)."""
    if isinstance(stored, bytes):
        stored = zlib.decompress(stored).decode("utf-8", "surrogatepass")
    return json.loads(stored)


def _dumps(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


class SqliteStore:
    """Persistence in a sqlite database file.

    Args:
        path: The database file (created with its folder if missing).
        durability: ``"batch"`` (default, WAL + synchronous=NORMAL) or ``"fsync"``.
        busy_timeout: Seconds a writer waits for another process's lock.
    """

    name = "sqlite"
    ordered = True
    task_events = True
    shares_runs = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        durability: Literal["batch", "fsync"] = "batch",
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.durability = durability
        self.busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._writer: Writer[Sequence[Record]] | None = None
        #: In the writer thread: per workflow started (or submitted) through this
        #: store, the tasks that have a row in ``task_states`` (deleted when the
        #: task completes). A workflow not in here may have rows of any task.
        self._states: dict[str, set[str]] = {}

    def __repr__(self) -> str:
        return f"<SqliteStore {str(self.path)!r} open={self._writer is not None}>"

    def _mapped(self, fn: Callable[..., T], *args: Any, doing: str) -> Callable[[], T]:
        def call() -> T:
            try:
                return fn(*args)
            except sqlite3.Error as exc:
                raise _map_error(exc, self.path, doing) from exc

        return call

    async def open(self) -> None:
        """Open (or create) the database, migrate its schema, start the writer thread."""
        try:
            await anyio.to_thread.run_sync(self.path.parent.mkdir, 0o777, True, True)
        except OSError as exc:
            raise PersistenceError(
                f"Cannot create the folder of {self.path}: {exc.strerror or exc}; choose a "
                "writable db_path.",
                ErrorCode.PERSISTENCE_CONNECTION_FAILED,
                {"backend": "sqlite", "path": str(self.path)},
            ) from exc
        self._db = await anyio.to_thread.run_sync(self._mapped(self._open_sync, doing="open"))
        self._writer = Writer(
            f"gleitzeit-sqlite-writer {self.path.name}", self._write_sync, self._close_sync
        )
        self._writer.start()

    def _open_sync(self) -> sqlite3.Connection:
        # Switching a new file to WAL (and creating the schema) can meet SQLITE_BUSY
        # without sqlite's busy handler when processes open it at the same moment.
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.01
        while True:
            try:
                return self._try_open()
            except sqlite3.OperationalError as exc:
                busy = (getattr(exc, "sqlite_errorname", "") or "").startswith(
                    ("SQLITE_BUSY", "SQLITE_LOCKED")
                )
                if not busy or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _try_open(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=" + ("FULL" if self.durability == "fsync" else "NORMAL"))
            db.execute("PRAGMA foreign_keys=ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise PersistenceError(
                    f"{self.path} was written by a newer gleitzeit (schema {version} > "
                    f"{SCHEMA_VERSION}); upgrade gleitzeit.",
                    ErrorCode.PERSISTENCE_INTEGRITY_ERROR,
                    {"backend": "sqlite", "path": str(self.path)},
                )
            if version < SCHEMA_VERSION:
                db.execute("BEGIN IMMEDIATE")
                version = db.execute("PRAGMA user_version").fetchone()[0]
                for number in range(version, SCHEMA_VERSION):
                    log.debug("migrating %s to schema %d", self.path, number + 1)
                    for statement in _MIGRATIONS[number].split(";"):
                        if statement.strip():
                            db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    async def aclose(self) -> None:
        """Finish the queued writes and close the database; the writer thread ends."""
        writer, self._writer = self._writer, None
        if writer is None:
            await anyio.lowlevel.checkpoint()
            return
        await writer.stop()

    def _close_sync(self) -> None:
        """In the writer thread, after its last job."""
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error as exc:
                log.warning("closing %s failed: %s", self.path, exc)

    def _writer_or_fail(self) -> Writer[Sequence[Record]]:
        if self._writer is None:
            raise PersistenceError(
                "The sqlite store is not open.",
                ErrorCode.SYSTEM_NOT_INITIALIZED,
                {"backend": "sqlite", "path": str(self.path)},
            )
        return self._writer

    async def record(self, events: Sequence[Event]) -> None:
        """Write a batch of events in one transaction (shared with other ready batches).

        On a full disk the leading events that fit are committed; the error's
        data says how many (``events_recorded`` of ``events``).
        """
        await self._writer_or_fail().record(events)

    async def record_step(self, records: Sequence[Record]) -> None:
        """As :meth:`record`, for a step's events and :class:`Completions` (appended rows)."""
        await self._writer_or_fail().record(records)

    def _write_sync(self, batches: Sequence[Sequence[Record]]) -> None:
        """In the writer thread: commit the batches in one transaction.

        A single batch that meets a full disk is committed in ever smaller
        pieces, keeping its longest prefix that fits.
        """
        db = self._db
        assert db is not None
        records = batches[0] if len(batches) == 1 else [r for batch in batches for r in batch]
        try:
            self._commit(db, records)
        except sqlite3.Error as exc:
            if len(batches) > 1 or not _error_name(exc).startswith(_FULL):
                raise _map_error(exc, self.path, "write to") from exc
        else:
            return
        events = as_events(records)  # keep what fits: smaller pieces, event by event
        done, size = 0, max(1, len(events) // 2)
        while done < len(events):
            piece = events[done : done + size]
            try:
                self._commit(db, piece)
            except sqlite3.Error as exc:
                full = _error_name(exc).startswith(_FULL)
                if full and size > 1:
                    size //= 2
                    continue
                extra = {"events_recorded": done, "events": len(events)} if full or done else {}
                raise _map_error(exc, self.path, "write to", **extra) from exc
            done += len(piece)

    def _commit(self, db: sqlite3.Connection, records: Sequence[Record]) -> None:
        try:
            self._transaction(db, records)
        except BaseException:
            self._states.clear()  # not known any more: delete rows at completion
            raise

    def _transaction(self, db: sqlite3.Connection, records: Sequence[Record]) -> None:
        task_rows: list[tuple[Any, ...]] = []
        done_rows: list[tuple[Any, ...]] = []
        gone: list[tuple[str, str]] = []  # task_states rows of completed tasks
        states = self._states
        dumps = json_encoder()

        def completed(
            wid: str, at: float, task_id: str, attempt: int, started: Any, result: Any
        ) -> None:
            row = (wid, task_id, attempt, at, started, dumps(result))
            if started is not None and attempt:
                done_rows.append(row)
            else:  # its attempt's start may be known only from its row in task_states
                _flush_done(db, done_rows, gone)  # appended in order
                db.execute(_RESOLVED_COMPLETION, row)
            tracked = states.get(wid)
            if tracked is None or task_id in tracked:
                gone.append((wid, task_id))
                if tracked is not None:
                    tracked.discard(task_id)

        db.execute("BEGIN IMMEDIATE")
        try:
            for e in records:
                if isinstance(e, Completions):
                    _flush_tasks(db, task_rows)
                    wid, at = e.workflow_id, e.at
                    tracked = states.get(wid)
                    for task_id, attempt, started, result in e.rows:
                        if started is None or not attempt or tracked is None or task_id in tracked:
                            completed(wid, at, task_id, attempt, started, result)
                        else:  # the engine's usual row: nothing to resolve or delete
                            done_rows.append((wid, task_id, attempt, at, started, dumps(result)))
                    continue
                kind = e.kind
                if kind is EventKind.TASK_COMPLETED:
                    assert e.task_id is not None
                    _flush_tasks(db, task_rows)
                    completed(
                        e.workflow_id, e.at, e.task_id, e.attempt, e.started_at, e.result or {}
                    )
                elif kind is EventKind.WORKFLOW_SUBMITTED:
                    assert e.workflow is not None
                    wf = e.workflow
                    _flush_tasks(db, task_rows)
                    _flush_done(db, done_rows, gone)
                    states[wf.id] = set()
                    db.execute("DELETE FROM task_states WHERE workflow_id = ?", (wf.id,))
                    db.execute("DELETE FROM completions WHERE workflow_id = ?", (wf.id,))
                    db.execute(
                        "INSERT OR REPLACE INTO workflows (id, name, status, definition, "
                        "total_tasks, created_at) VALUES (?, ?, 'pending', ?, ?, ?)",
                        (wf.id, wf.name, _pack(unstructure_workflow(wf)), wf.total_tasks, e.at),
                    )
                elif kind is EventKind.WORKFLOW_STARTED:
                    _flush_tasks(db, task_rows)
                    _flush_done(db, done_rows, gone)
                    states[e.workflow_id] = set()
                    db.execute(
                        "UPDATE workflows SET status='running', started_at=?, "
                        "finished_at=NULL, error=NULL WHERE id=?",
                        (e.at, e.workflow_id),
                    )
                    # A resumed run starts again: only completions stay.
                    db.execute("DELETE FROM task_states WHERE workflow_id=?", (e.workflow_id,))
                elif kind is EventKind.WORKFLOW_FINISHED:
                    _flush_tasks(db, task_rows)
                    _flush_done(db, done_rows, gone)
                    states.pop(e.workflow_id, None)
                    db.execute(
                        "UPDATE workflows SET status=?, finished_at=?, error=? WHERE id=?",
                        (e.status, e.at, _dumps(e.error), e.workflow_id),
                    )
                else:
                    tracked = states.get(e.workflow_id)
                    if tracked is not None:
                        tracked.add(e.task_id)  # type: ignore[arg-type]
                    task_rows.append(
                        (
                            e.workflow_id,
                            e.task_id,
                            STATUS_OF_EVENT[kind],
                            None,
                            _dumps(e.error),
                            e.attempt,
                            e.at,
                            e.at if kind is EventKind.TASK_STARTED else e.started_at,
                        )
                    )
            _flush_tasks(db, task_rows)
            _flush_done(db, done_rows, gone)
            db.execute("COMMIT")
        except BaseException:
            # sqlite may have rolled back already (a full disk does): keep the real error.
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    log.warning("rolling back failed: %s", exc)
            raise

    async def load(self, workflow_id: str) -> StoredRun | None:
        """The stored state of one workflow."""
        writer = self._writer_or_fail()
        return await writer.call(self._mapped(self._load_sync, workflow_id, doing="read"))

    def _load_sync(self, workflow_id: str) -> StoredRun | None:
        db = self._db
        assert db is not None
        row = db.execute(
            "SELECT definition, status, created_at, started_at, finished_at, error "
            "FROM workflows WHERE id = ?",
            (workflow_id,),
        ).fetchone()
        if row is None:
            return None
        return self._build(db, workflow_id, row)

    @staticmethod
    def _build(db: sqlite3.Connection, workflow_id: str, row: tuple[Any, ...]) -> StoredRun:
        definition, status, created, started, finished, error = row
        run = StoredRun(
            structure_workflow(_unpack(definition)),
            status=WorkflowStatus(status),
            created_at=created,
            started_at=started,
            finished_at=finished,
            error=json.loads(error) if error else None,
        )
        task_status, results, errors, times = (
            run.task_status,
            run.results,
            run.errors,
            run.task_times,
        )
        for task_id, status, task_error, attempt, at, started in db.execute(
            "SELECT task_id, status, error, attempt, updated_at, started_at "
            "FROM task_states WHERE workflow_id = ?",
            (workflow_id,),
        ):
            task_status[task_id] = status
            if started is not None:
                end = None if status == "running" else at
                times[task_id] = [AttemptTime(started, end, status, attempt)]
            if status == "failed" and task_error:
                errors[task_id] = json.loads(task_error)
        seen: set[str] = set()
        for task_id, attempt, at, started, result in db.execute(
            "SELECT task_id, attempt, at, started_at, result FROM completions "
            "WHERE workflow_id = ? ORDER BY rowid",
            (workflow_id,),
        ):
            if task_id in seen:  # the first recorded completion is final
                continue
            seen.add(task_id)
            task_status[task_id] = "completed"
            errors.pop(task_id, None)
            if started is not None:
                times[task_id] = [AttemptTime(started, at, "completed", attempt)]
            else:
                times.pop(task_id, None)
            results[task_id] = json.loads(result)
        return run

    def coordinate(self, workflow: Workflow) -> LocalCoordinator:
        """This process runs every task itself: every claim is granted."""
        return LOCAL

    def run_lock(self, workflow_id: str) -> RunLock:
        """A lock file under ``<db>-owners/``: one process runs a workflow at a time."""
        return RunLock(self.path.with_name(self.path.name + "-owners"), workflow_id)

    async def list_runs(self, limit: int) -> list[StoredRun]:
        """The newest workflows first."""
        writer = self._writer_or_fail()
        return await writer.call(self._mapped(self._list_sync, limit, doing="read"))

    def _list_sync(self, limit: int) -> list[StoredRun]:
        db = self._db
        assert db is not None
        rows = db.execute(
            "SELECT id, definition, status, created_at, started_at, finished_at, "
            "error FROM workflows ORDER BY created_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [self._build(db, row[0], row[1:]) for row in rows]


#: A completion whose attempt or start is known only from an earlier event of
#: its task (the task's row in ``task_states``), as :func:`apply_event` does.
_RESOLVED_COMPLETION: Final = (
    "INSERT INTO completions (workflow_id, task_id, attempt, at, started_at, result) "
    "SELECT ?1, ?2, CASE WHEN ?3 != 0 THEN ?3 ELSE coalesce(s.attempt, 0) END, ?4, "
    "coalesce(?5, s.started_at), ?6 FROM (SELECT 1) LEFT JOIN task_states AS s "
    "ON s.workflow_id = ?1 AND s.task_id = ?2 AND s.started_at IS NOT NULL"
)


def _flush_done(
    db: sqlite3.Connection, rows: list[tuple[Any, ...]], gone: list[tuple[str, str]]
) -> None:
    if rows:
        db.executemany(
            "INSERT INTO completions (workflow_id, task_id, attempt, at, started_at, result) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        rows.clear()
    if gone:  # a completed task's earlier state row is done with
        db.executemany("DELETE FROM task_states WHERE workflow_id = ? AND task_id = ?", gone)
        gone.clear()


def _flush_tasks(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        db.executemany(
            "INSERT INTO task_states (workflow_id, task_id, status, result, error, attempt, "
            "updated_at, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workflow_id, "
            "task_id) DO UPDATE SET status=excluded.status, result=excluded.result, "
            "error=excluded.error, "
            # an event that names no attempt (a skip, a cancel) keeps the started one's
            "attempt=CASE WHEN excluded.attempt != 0 OR task_states.started_at IS NULL "
            "THEN excluded.attempt ELSE task_states.attempt END, "
            "updated_at=excluded.updated_at, "
            "started_at=coalesce(excluded.started_at, task_states.started_at)",
            rows,
        )
        rows.clear()
