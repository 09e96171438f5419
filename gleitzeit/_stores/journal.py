"""The ``journal`` store: an append-only JSON-lines file, one record per state change.

Every line is one state change as a JSON object with a record version ``v``:
``v: 1``, an :class:`~gleitzeit.core._events.Event` as the serde converter
writes it; ``v: 2``, one task completion in compact form,
``{"v":2,"w":workflow_id,"at":at,"c":[task_id,attempt,started_at,result]}``
(what the engine records per task: written row by row from the step's
completions, with one JSON encoder per write and no event objects; a
completion event is written the same way). Files
holding only ``v: 1`` lines (earlier versions) load as they are. On open the
file is replayed to rebuild every workflow's state. A torn last line (the
process died mid-write) is dropped with a warning and cut off; a bad line
anywhere else is a ``PERSISTENCE_INTEGRITY_ERROR`` naming the line.

Durability (``durability=``):

* ``"batch"`` (default): each batch of events is written with one ``write``
  and handed to the OS before :meth:`JournalStore.record` returns, so a killed
  process loses nothing recorded. Power loss may lose the last batches.
* ``"fsync"``: as ``"batch"``, then ``fsync`` per write (survives power loss;
  slower).

The writes happen in one long-lived writer thread (see ``_writer.py``): the
event loop hands a batch over and waits; batches that are ready together go
out in one ``write``. On a full disk the complete records that fit are kept,
the cut-off rest is truncated away, and the error says how many were kept.

One process at a time: the file is locked while open.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import anyio.lowlevel
import anyio.to_thread

from .._serde import event_from_record, event_to_record
from ..core._events import EventKind
from ..core.errors import ErrorCode, PersistenceError
from . import LOCAL
from ._encode import json_encoder, json_string
from ._state import Completions, StoredRun, apply_event, as_events, snapshot_events
from ._writer import Writer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from ..core._events import Event
    from ..core._models import Workflow
    from . import LocalCoordinator
    from ._state import Record

__all__ = ["JournalStore", "read_journal"]

log = logging.getLogger("gleitzeit.journal")

Durability = Literal["batch", "fsync"]
_DURABILITY: Final = ("batch", "fsync")


def _error(message: str, code: ErrorCode, path: Path, **extra: Any) -> PersistenceError:
    return PersistenceError(message, code, {"backend": "journal", "path": str(path), **extra})


#: errno values that mean "no room": the records that fit are kept.
_NO_ROOM: Final = {errno.ENOSPC: "ENOSPC", errno.EDQUOT: "EDQUOT", errno.EFBIG: "EFBIG"}


def _os_error(exc: OSError, path: Path, doing: str, **extra: Any) -> PersistenceError:
    if exc.errno in _NO_ROOM:
        kept = ""
        if "events" in extra:
            kept = f" {extra['events_recorded']} of the {extra['events']} records were saved."
        reason = (
            "the file reached this process's size limit (ulimit -f)"
            if exc.errno == errno.EFBIG
            else "the disk is full"
        )
        return _error(
            f"Cannot {doing} the journal {path}: {reason} ({exc.strerror}).{kept} Free space "
            "on that disk (or move db_path to one with room), then resume the workflow.",
            ErrorCode.PERSISTENCE_WRITE_FAILED,
            path,
            errno=_NO_ROOM[exc.errno],
            **extra,
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return _error(
            f"Cannot {doing} the journal {path}: permission denied; choose a writable db_path.",
            ErrorCode.PERSISTENCE_CONNECTION_FAILED,
            path,
            **extra,
        )
    return _error(
        f"Cannot {doing} the journal {path}: {exc.strerror or exc}.",
        ErrorCode.PERSISTENCE_WRITE_FAILED,
        path,
        **extra,
    )


def read_journal(path: str | os.PathLike[str]) -> tuple[list[Event], int, bool]:
    """Parse a journal file.

    Returns:
        The events, the byte length of the good part, and whether a torn
        last line was dropped.

    Raises:
        PersistenceError: PERSISTENCE_INTEGRITY_ERROR for a bad line that is
            not the last one; PERSISTENCE_READ_FAILED if unreadable.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return [], 0, False
    except OSError as exc:
        raise _error(
            f"Cannot read the journal {p}: {exc.strerror or exc}.",
            ErrorCode.PERSISTENCE_READ_FAILED,
            p,
        ) from exc
    events: list[Event] = []
    good, torn = _parse(data, p, lambda _, event: events.append(event))
    return events, good, torn


def _parse(data: bytes, path: Path, on_event: Callable[[int, Event], object]) -> tuple[int, bool]:
    """Parse journal lines, calling ``on_event(offset, event)`` for each.

    Returns:
        The byte length of the good part, and whether a torn last line was found.

    Raises:
        PersistenceError: PERSISTENCE_INTEGRITY_ERROR for a bad line that is
            not the last one.
    """
    pos = number = 0
    size = len(data)
    while pos < size:
        newline = data.find(b"\n", pos)
        if newline == -1:
            # Every record ends with a newline; without it the write was cut short.
            return pos, True
        number += 1
        line = data[pos:newline]
        if line.strip():
            try:
                event = event_from_record(json.loads(line))
            except Exception as exc:
                if newline + 1 == size:  # the last line: torn by a crash mid-write
                    return pos, True
                raise _error(
                    f"The journal {path} is damaged at line {number} ({type(exc).__name__}: "
                    f"{exc}); restore it from a backup or remove that line.",
                    ErrorCode.PERSISTENCE_INTEGRITY_ERROR,
                    path,
                    line=number,
                ) from exc
            on_event(pos, event)
        pos = newline + 1
    return pos, False


class JournalStore:
    """Append-only JSON-lines persistence.

    Args:
        path: The journal file (created with its folder if missing).
        durability: ``"batch"`` or ``"fsync"`` (see the module docs).
    """

    name = "journal"
    ordered = True
    task_events = True
    shares_runs = False

    def __init__(self, path: str | os.PathLike[str], durability: Durability = "batch") -> None:
        if durability not in _DURABILITY:
            raise PersistenceError(
                f"Unknown journal durability {durability!r}; use {' or '.join(_DURABILITY)}.",
                ErrorCode.CONFIGURATION_ERROR,
                {"backend": "journal"},
            )
        self.path = Path(path)
        self.durability = durability
        self._fd: int | None = None
        self._end = 0  # the file's length: where the next record starts
        #: Per workflow: where its latest submission was written (at or before
        #: that byte offset) and when it was submitted. Task records stay in
        #: the file: :meth:`load` reads them back.
        self._index: dict[str, tuple[int, float]] = {}
        self._writer: Writer[Sequence[Record]] | None = None

    def __repr__(self) -> str:
        return f"<JournalStore {str(self.path)!r} workflows={len(self._index)}>"

    async def open(self) -> None:
        """Lock the file, replay it, and cut off a torn last line."""
        await anyio.to_thread.run_sync(self._open_sync)
        self._writer = Writer(
            f"gleitzeit-journal-writer {self.path.name}", self._write_sync, self._close_sync
        )
        self._writer.start()

    def _open_sync(self) -> None:
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise _os_error(exc, path, "open") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _error(
                f"The journal path {path} is not a regular file; choose a file path for db_path.",
                ErrorCode.PERSISTENCE_CONNECTION_FAILED,
                path,
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise _error(
                f"The journal {path} is in use by {_lock_holder(path)}, and a journal has one "
                "writer at a time; stop that process first, use another db_path, or use "
                "persistence='sqlite' to share stored workflows between processes.",
                ErrorCode.PERSISTENCE_TRANSACTION_FAILED,
                path,
            ) from exc
        _write_owner(path)
        index = self._index

        def note(offset: int, event: Event) -> None:
            if event.kind is EventKind.WORKFLOW_SUBMITTED:
                index[event.workflow_id] = (offset, event.at)

        try:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise _error(
                    f"Cannot read the journal {path}: {exc.strerror or exc}.",
                    ErrorCode.PERSISTENCE_READ_FAILED,
                    path,
                ) from exc
            good, torn = _parse(data, path, note)
            del data
            if torn:
                log.warning(
                    "journal %s: ignoring a torn last record (the process stopped mid-write)", path
                )
                os.ftruncate(fd, good)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._end = good

    async def aclose(self) -> None:
        """Write what is queued, flush and unlock; the writer thread ends."""
        writer, self._writer = self._writer, None
        if writer is None:
            await anyio.lowlevel.checkpoint()
            return
        await writer.stop()

    def _close_sync(self) -> None:
        """In the writer thread, after its last write."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.fsync(fd)
        with contextlib.suppress(OSError):
            _owner_path(self.path).unlink()  # before unlocking: a next holder writes its own
        os.close(fd)  # also releases the lock

    @staticmethod
    def _encode(records: Iterable[Record]) -> bytes:
        """The lines of ``records``: completions (events or rows) as v2 lines, the rest v1."""
        dumps = json_encoder()
        lines: list[str] = []
        for record in records:
            if isinstance(record, Completions):
                head = f'{{"v":2,"w":{json_string(record.workflow_id)},"at":{dumps(record.at)},"c":'
                lines.extend([head + dumps(row) + "}\n" for row in record.rows])
            elif record.kind is EventKind.TASK_COMPLETED:
                row = (record.task_id, record.attempt, record.started_at, record.result or {})
                lines.append(
                    f'{{"v":2,"w":{json_string(record.workflow_id)},"at":{dumps(record.at)},'
                    f'"c":{dumps(row)}}}\n'
                )
            else:
                lines.append(dumps(event_to_record(record)) + "\n")
        return "".join(lines).encode("utf-8", "surrogatepass")

    def _writer_or_fail(self) -> Writer[Sequence[Record]]:
        if self._writer is None:
            raise _error("The journal is not open.", ErrorCode.SYSTEM_NOT_INITIALIZED, self.path)
        return self._writer

    async def record(self, events: Sequence[Event]) -> None:
        """Append the events (with whatever else is ready) in one write; return when written.

        With ``durability="fsync"`` the write is also fsynced. On a full disk the
        complete records that fit are kept (and applied); the error's data says
        how many (``events_recorded`` of ``events``).
        """
        await self._writer_or_fail().record(events)

    async def record_step(self, records: Sequence[Record]) -> None:
        """As :meth:`record`, for a step's events and :class:`Completions` (one line per
        completion, in order)."""
        await self._writer_or_fail().record(records)

    def _write_sync(self, batches: Sequence[Sequence[Record]]) -> None:
        """In the writer thread: append the batches with one write.

        Nothing of a failed write stays in the file except, for a single batch
        on a full disk, its complete records that fit. Submissions written
        are noted in the index here, in the same thread, so it always matches
        the file (loading and compaction, also run here, read the file).
        """
        fd = self._fd
        assert fd is not None
        data = self._encode(e for batch in batches for e in batch)
        start = self._end
        written = 0
        try:
            view = memoryview(data)
            while written < len(data):
                written += os.write(fd, view[written:])
            if self.durability == "fsync":
                os.fsync(fd)
        except OSError as exc:
            keep = data.rfind(b"\n", 0, written) + 1 if len(batches) == 1 else 0
            if exc.errno not in _NO_ROOM:
                keep = 0
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start + keep)  # never leave a torn record behind
                if keep and self.durability == "fsync":
                    os.fsync(fd)
            self._end = start + keep
            extra = {}
            if len(batches) == 1:
                kept = data.count(b"\n", 0, keep)
                events = as_events(batches[0])
                self._note(events[:kept], start)
                extra = {"events_recorded": kept, "events": len(events)}
            raise _os_error(exc, self.path, "write", **extra) from exc
        self._end = start + written
        for batch in batches:
            self._note(batch, start)

    def _note(self, records: Iterable[Record], offset: int) -> None:
        """Index the submissions among ``records``, written at or after ``offset``.

        (Reading from before a submission's own line is harmless: a submission
        starts its workflow's state afresh, whatever was replayed before it.)
        """
        index = self._index
        for record in records:
            if not isinstance(record, Completions) and record.kind is EventKind.WORKFLOW_SUBMITTED:
                index[record.workflow_id] = (offset, record.at)

    def _replay(self, workflow_ids: Iterable[str]) -> dict[str, StoredRun]:
        """In the writer thread: the state of these workflows, read back from the file."""
        wanted = {wid: self._index[wid] for wid in workflow_ids if wid in self._index}
        if not wanted:
            return {}
        fd = self._fd
        assert fd is not None
        start = min(offset for offset, _ in wanted.values())
        try:
            data = os.pread(fd, self._end - start, start)
        except OSError as exc:
            raise _error(
                f"Cannot read the journal {self.path}: {exc.strerror or exc}.",
                ErrorCode.PERSISTENCE_READ_FAILED,
                self.path,
            ) from exc
        # Every record of a workflow names its id as a JSON string: lines
        # without one of them are skipped unparsed. (An id with non-ASCII
        # characters may have been written escaped: then every line is read.)
        needles = [json_string(wid).encode("utf-8", "surrogatepass") for wid in wanted]
        if not all(wid.isascii() for wid in wanted):
            needles = [b""]
        runs: dict[str, StoredRun] = {}
        for line in data.splitlines():
            if line.strip() and any(needle in line for needle in needles):
                apply_event(runs, event_from_record(json.loads(line)))
        return {wid: runs[wid] for wid in wanted if wid in runs}

    async def load(self, workflow_id: str) -> StoredRun | None:
        """The state of one workflow, read back from the file in order with the writes."""

        def load() -> StoredRun | None:
            return self._replay([workflow_id]).get(workflow_id)

        return await self._writer_or_fail().call(load)

    def coordinate(self, workflow: Workflow) -> LocalCoordinator:
        """This process runs every task itself: every claim is granted."""
        return LOCAL

    def run_lock(self, workflow_id: str) -> None:
        """None: no other process can open this store while this one has it."""
        return None

    async def list_runs(self, limit: int) -> list[StoredRun]:
        """Newest first (copies, taken in order with the writes)."""

        def newest() -> list[StoredRun]:
            ids = sorted(self._index, key=lambda wid: self._index[wid][1], reverse=True)
            runs = self._replay(ids[: max(0, limit)])
            return [runs[wid] for wid in ids[: max(0, limit)] if wid in runs]

        return await self._writer_or_fail().call(newest)

    async def compact(self) -> dict[str, int]:
        """Rewrite the journal as the shortest record of its current state.

        Runs in the writer thread, between two writes, from what was written:
        events recorded while the journal is compacted land after the
        snapshot, so nothing is lost and a live run goes on undisturbed. The
        new file replaces the old one atomically (a crash leaves one or the
        other, never a mix).

        Returns:
            ``runs``, ``bytes_before``, ``bytes_after`` and ``events_after``.
        """
        result: dict[str, int] = await self._writer_or_fail().call(self._compact_sync)
        return result

    def _compact_sync(self) -> dict[str, int]:
        assert self._fd is not None
        # In the writer thread, between two writes: the file holds exactly
        # what was written so far.
        runs = sorted(self._replay(self._index).values(), key=lambda r: r.created_at)
        index: dict[str, tuple[int, float]] = {}
        parts: list[bytes] = []
        size = events = 0
        for run in runs:
            snapshot = snapshot_events(run)
            part = self._encode(snapshot)
            index[run.workflow.id] = (size, run.created_at)
            parts.append(part)
            size += len(part)
            events += len(snapshot)
        data = b"".join(parts)
        before = self._end
        temp = self.path.with_name(self.path.name + ".compact")
        fd = -1
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            # Locked before it takes the journal's name: no other process can
            # slip in between the rename and our lock.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.replace(temp, self.path)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()
            raise _os_error(exc, self.path, "compact") from exc
        os.close(self._fd)  # the old file, now unlinked; its lock goes with it
        self._fd = fd
        self._end = len(data)
        self._index = index
        log.debug("journal %s compacted: %d -> %d bytes", self.path, before, self._end)
        return {
            "runs": len(runs),
            "bytes_before": before,
            "bytes_after": self._end,
            "events_after": events,
        }


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort where unsupported)."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _owner_path(path: Path) -> Path:
    """The file beside a journal that names the process holding it."""
    return path.with_name(path.name + ".owner")


def _write_owner(path: Path) -> None:
    """Name this process as the journal's holder (best effort)."""
    with contextlib.suppress(OSError):
        _owner_path(path).write_text(
            json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "argv": sys.argv[:4]}),
            encoding="utf-8",
        )


def _lock_holder(path: Path) -> str:
    """Who holds the journal, as its owner file says: "process 123 on host (argv)"."""
    try:
        owner = json.loads(_owner_path(path).read_text(encoding="utf-8"))
        text = f"process {int(owner['pid'])} on {owner['host']}"
        argv = " ".join(str(a) for a in owner.get("argv") or [])
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
    return text + (f" ({argv[:120]})" if argv else "")
