"""The ``sqlite`` store (the default): one database file, WAL mode, batched transactions.

Each :meth:`SqliteStore.record` batch is one transaction, run in a worker
thread (one at a time) so the event loop never blocks on disk. WAL mode with
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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import anyio.to_thread

from .._serde import structure_workflow, unstructure_workflow
from ..core._events import EventKind
from ..core._models import WorkflowStatus
from ..core.errors import ErrorCode, PersistenceError
from ._owner import RunLock
from ._state import STATUS_OF_EVENT, StoredRun

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence

    from ..core._events import Event

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

log = logging.getLogger("gleitzeit.sqlite")

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
)
#: The schema version this code writes.
SCHEMA_VERSION: Final = len(_MIGRATIONS)

_BUSY: Final = {"SQLITE_BUSY", "SQLITE_LOCKED"}
_FULL: Final = {"SQLITE_FULL", "SQLITE_IOERR"}
_ACCESS: Final = {"SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_AUTH"}
_CORRUPT: Final = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


def _map_error(exc: sqlite3.Error, path: Path, doing: str) -> PersistenceError:
    """Map a sqlite3 error to the most specific code, by its sqlite error code."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    base = "_".join(name.split("_")[:2])  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    data = {"backend": "sqlite", "path": str(path), "sqlite_error": name}
    if base in _BUSY:
        return PersistenceError(
            f"Cannot {doing} {path}: the database is locked by another process for too long; "
            "retry, or give each client its own db_path.",
            ErrorCode.PERSISTENCE_TRANSACTION_FAILED,
            data,
        )
    if base in _FULL:
        return PersistenceError(
            f"Cannot {doing} {path}: {exc} (is the disk full?); free space and resume the "
            "workflow.",
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
        self._limiter: anyio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        return f"<SqliteStore {str(self.path)!r} open={self._db is not None}>"

    async def _run(self, fn: Callable[..., Any], *args: Any, doing: str) -> Any:
        def call() -> Any:
            try:
                return fn(*args)
            except sqlite3.Error as exc:
                raise _map_error(exc, self.path, doing) from exc

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def open(self) -> None:
        """Open (or create) the database and migrate its schema."""
        self._limiter = anyio.CapacityLimiter(1)
        try:
            await anyio.to_thread.run_sync(self.path.parent.mkdir, 0o777, True, True)
        except OSError as exc:
            raise PersistenceError(
                f"Cannot create the folder of {self.path}: {exc.strerror or exc}; choose a "
                "writable db_path.",
                ErrorCode.PERSISTENCE_CONNECTION_FAILED,
                {"backend": "sqlite", "path": str(self.path)},
            ) from exc
        self._db = await self._run(self._open_sync, doing="open")

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
        """Close the database."""
        db, self._db = self._db, None
        if db is not None:
            with anyio.CancelScope(shield=True):
                await self._run(db.close, doing="close")

    def _db_or_fail(self) -> sqlite3.Connection:
        if self._db is None:
            raise PersistenceError(
                "The sqlite store is not open.",
                ErrorCode.SYSTEM_NOT_INITIALIZED,
                {"backend": "sqlite", "path": str(self.path)},
            )
        return self._db

    async def record(self, events: Sequence[Event]) -> None:
        """Write a batch of events in one transaction."""
        db = self._db_or_fail()
        await self._run(self._record_sync, db, list(events), doing="write to")

    @staticmethod
    def _record_sync(db: sqlite3.Connection, events: list[Event]) -> None:
        task_rows: list[tuple[Any, ...]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for e in events:
                kind = e.kind
                if kind is EventKind.WORKFLOW_SUBMITTED:
                    assert e.workflow is not None
                    wf = e.workflow
                    db.execute("DELETE FROM tasks WHERE workflow_id = ?", (wf.id,))
                    db.execute(
                        "INSERT OR REPLACE INTO workflows (id, name, status, definition, "
                        "total_tasks, created_at) VALUES (?, ?, 'pending', ?, ?, ?)",
                        (wf.id, wf.name, _dumps(unstructure_workflow(wf)), wf.total_tasks, e.at),
                    )
                elif kind is EventKind.WORKFLOW_STARTED:
                    _flush_tasks(db, task_rows)
                    db.execute(
                        "UPDATE workflows SET status='running', started_at=?, "
                        "finished_at=NULL, error=NULL WHERE id=?",
                        (e.at, e.workflow_id),
                    )
                    db.execute(
                        "DELETE FROM tasks WHERE workflow_id=? AND status != 'completed'",
                        (e.workflow_id,),
                    )
                elif kind is EventKind.WORKFLOW_FINISHED:
                    _flush_tasks(db, task_rows)
                    db.execute(
                        "UPDATE workflows SET status=?, finished_at=?, error=? WHERE id=?",
                        (e.status, e.at, _dumps(e.error), e.workflow_id),
                    )
                else:
                    task_rows.append(
                        (
                            e.workflow_id,
                            e.task_id,
                            STATUS_OF_EVENT[kind],
                            _dumps(e.result),
                            _dumps(e.error),
                            e.attempt,
                            e.at,
                        )
                    )
            _flush_tasks(db, task_rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def load(self, workflow_id: str) -> StoredRun | None:
        """The stored state of one workflow."""
        db = self._db_or_fail()
        return await self._run(self._load_sync, db, workflow_id, doing="read")  # type: ignore[no-any-return]

    def _load_sync(self, db: sqlite3.Connection, workflow_id: str) -> StoredRun | None:
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
            structure_workflow(json.loads(definition)),
            status=WorkflowStatus(status),
            created_at=created,
            started_at=started,
            finished_at=finished,
            error=json.loads(error) if error else None,
        )
        for task_id, task_status, result, task_error in db.execute(
            "SELECT task_id, status, result, error FROM tasks WHERE workflow_id = ?",
            (workflow_id,),
        ):
            run.task_status[task_id] = task_status
            if task_status == "completed":
                run.results[task_id] = json.loads(result) if result else {}
            elif task_status == "failed" and task_error:
                run.errors[task_id] = json.loads(task_error)
        return run

    def run_lock(self, workflow_id: str) -> RunLock:
        """A lock file under ``<db>-owners/``: one process runs a workflow at a time."""
        return RunLock(self.path.with_name(self.path.name + "-owners"), workflow_id)

    async def list_runs(self, limit: int) -> list[StoredRun]:
        """The newest workflows first."""
        db = self._db_or_fail()
        return await self._run(self._list_sync, db, limit, doing="read")  # type: ignore[no-any-return]

    def _list_sync(self, db: sqlite3.Connection, limit: int) -> list[StoredRun]:
        rows = db.execute(
            "SELECT id, definition, status, created_at, started_at, finished_at, "
            "error FROM workflows ORDER BY created_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [self._build(db, row[0], row[1:]) for row in rows]


def _flush_tasks(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        db.executemany(
            "INSERT INTO tasks (workflow_id, task_id, status, result, error, attempt, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workflow_id, task_id) DO UPDATE SET "
            "status=excluded.status, result=excluded.result, error=excluded.error, "
            "attempt=excluded.attempt, updated_at=excluded.updated_at "
            "WHERE tasks.status != 'completed'",  # a recorded completion is final
            rows,
        )
        rows.clear()
