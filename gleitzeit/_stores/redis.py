"""The ``redis`` store: workflow state in Redis, shared by processes on many hosts.

Keys live under a prefix (default ``gleitzeit``):

* ``{prefix}:runs`` — sorted set of workflow ids by submission time;
* ``{prefix}:finished`` — sorted set of finished ids by finish time (bounds
  how many finished runs are kept);
* ``{prefix}:wf:{id}`` — hash: ``definition`` (JSON), ``status``,
  ``created_at``, ``started_at``, ``finished_at``, ``error`` (JSON);
* ``{prefix}:wf:{id}:tasks`` / ``:results`` / ``:errors`` — hashes by task id.

A batch of events is applied by one Lua script, atomically and in order; the
script is the replay rule of :func:`~gleitzeit._stores._state.apply_event`
written for Redis (the tests hold the two against each other). Results,
errors and definitions travel as JSON text that the script stores verbatim,
so they round-trip exactly.

redis-py's asyncio client runs on asyncio only, and gleitzeit also runs on
trio. So the store uses redis-py's blocking client from worker threads
(``anyio.to_thread``), one call at a time per store (batches keep their
order). A lost connection is retried with backoff for ``retry_for`` seconds;
after that the call fails with a :class:`PersistenceError` and the run
fails with it — a result is never dropped silently.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread

from .._gc import gc_paused
from .._serde import compact_workflow, structure_compact, structure_workflow
from ..core._events import EventKind
from ..core._models import WorkflowStatus
from ..core.errors import ConfigurationError, ErrorCode, PersistenceError
from ._state import AttemptTime, StoredRun
from .redis_share import (
    _BEGIN,
    _COMPLETE,
    _END,
    _RECLAIM,
    TRACK,
    Heartbeat,
    RedisCoordinator,
    consumer_name,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import redis

    from ..core._events import Event
    from ..core._models import Workflow

__all__ = ["DEFAULT_REDIS_URL", "RedisStore", "mask_url"]

log = logging.getLogger("gleitzeit.redis")

DEFAULT_REDIS_URL: Final = "redis://localhost:6379/0"

#: The replay rule (``_state.apply_event``) for Redis. ARGV: prefix, most
#: finished runs kept (0: all), then eight fields per event: kind, workflow
#: id, task id, time, status, payload (JSON text or ""), start of the
#: attempt (or ""), attempt.
_APPLY: Final = (
    TRACK
    + """
local TASK_STATUS = {
  task_started = 'running', task_completed = 'completed', task_failed = 'failed',
  task_skipped = 'skipped', task_cancelled = 'cancelled'
}
local p = ARGV[1]
local max_finished = tonumber(ARGV[2])
local i = 3
while i <= #ARGV do
  local kind, wid, tid, at, status, payload =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local started, attempt = ARGV[i + 6], ARGV[i + 7]
  i = i + 8
  local wk = p .. ':wf:' .. wid
  if kind == 'workflow_submitted' then
    redis.call('DEL', wk, wk .. ':tasks', wk .. ':results', wk .. ':errors', wk .. ':times')
    redis.call('HSET', wk, 'definition', payload, 'status', 'pending', 'created_at', at)
    redis.call('ZADD', p .. ':runs', tonumber(at), wid)
    redis.call('ZREM', p .. ':finished', wid)
    -- workers read the definition now, while the submitter starts the run
    redis.call('XADD', p .. ':notify', 'MAXLEN', '~', '1000', '*', 's', wid)
  elseif redis.call('EXISTS', wk) == 1 then
    local task_status = TASK_STATUS[kind]
    if task_status then
      -- A recorded completion is final: a late event of another attempt never replaces it.
      if redis.call('HGET', wk .. ':tasks', tid) ~= 'completed' then
        redis.call('HSET', wk .. ':tasks', tid, task_status)
        track(wk, tid, task_status, at, started, attempt)
        if task_status == 'completed' then
          redis.call('HSET', wk .. ':results', tid, payload)
          redis.call('HDEL', wk .. ':errors', tid)
        elseif task_status == 'failed' then
          redis.call('HSET', wk .. ':errors', tid, payload)
        else
          redis.call('HDEL', wk .. ':errors', tid)
        end
      end
    elseif kind == 'workflow_started' then
      redis.call('HSET', wk, 'status', 'running', 'started_at', at)
      redis.call('HDEL', wk, 'finished_at', 'error')
      redis.call('ZREM', p .. ':finished', wid)
      local states = redis.call('HGETALL', wk .. ':tasks')
      for j = 1, #states, 2 do
        if states[j + 1] ~= 'completed' then
          redis.call('HDEL', wk .. ':tasks', states[j])
          redis.call('HDEL', wk .. ':errors', states[j])
          redis.call('HDEL', wk .. ':times', states[j])
        end
      end
    elseif kind == 'workflow_finished' then
      redis.call('HSET', wk, 'status', status, 'finished_at', at)
      if payload == '' then
        redis.call('HDEL', wk, 'error')
      else
        redis.call('HSET', wk, 'error', payload)
      end
      if max_finished > 0 then
        redis.call('ZADD', p .. ':finished', tonumber(at), wid)
        while redis.call('ZCARD', p .. ':finished') > max_finished do
          local oldest = redis.call('ZPOPMIN', p .. ':finished')[1]
          local ok = p .. ':wf:' .. oldest
          redis.call('DEL', ok, ok .. ':tasks', ok .. ':results', ok .. ':errors',
            ok .. ':times', ok .. ':q', ok .. ':out', ok .. ':wait', ok .. ':dep', ok .. ':c')
          redis.call('ZREM', p .. ':runs', oldest)
        end
      end
    end
  end
end
return 1
"""
)


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _dumps(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


def _loads(raw: bytes | None) -> Any:
    if raw is None or raw == b"":
        return None
    return json.loads(raw)


def import_redis() -> Any:
    """The ``redis`` module, or a ConfigurationError saying which extra to install."""
    try:
        import redis
    except ImportError:
        raise ConfigurationError(
            "persistence='redis' needs gleitzeit[redis]: pip install 'gleitzeit[redis]'.",
            data={"option": "persistence", "value": "redis", "extra": "redis"},
        ) from None
    return redis


class RedisStore:
    """Persistence in Redis.

    Args:
        url: The Redis URL (``redis://[:password@]host:port/db``, ``rediss://``
            for TLS, ``unix://`` for a socket).
        prefix: Every key starts with ``prefix:``; stores with different
            prefixes on one Redis do not see each other.
        max_finished: Most finished workflows kept (oldest dropped first);
            None keeps all.
        retry_for: Seconds a lost connection is retried (with backoff) before
            a call fails.
        heartbeat_ttl: Seconds after which a process that stopped beating
            (died) loses the tasks it held to the others; refreshed four
            times per TTL from a thread of its own.
    """

    name = "redis"
    ordered = True
    task_events = True
    shares_runs = True

    def __init__(
        self,
        url: str = DEFAULT_REDIS_URL,
        *,
        prefix: str = "gleitzeit",
        max_finished: int | None = None,
        retry_for: float = 30.0,
        heartbeat_ttl: float = 5.0,
    ) -> None:
        self._redis = import_redis()
        self.heartbeat_ttl = heartbeat_ttl
        self.consumer = consumer_name()
        self.scripts: dict[str, Any] = {}
        self._heartbeat: Heartbeat | None = None
        self._beat_conn: redis.Redis | None = None
        self.url = url
        self.prefix = prefix
        self.max_finished = max_finished
        self.retry_for = retry_for
        self._conn: redis.Redis | None = None
        self._apply: Any = None
        self._limiter = anyio.CapacityLimiter(1)

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"<RedisStore {mask_url(self.url)} prefix={self.prefix!r} {state}>"

    # --- connection -------------------------------------------------------------

    def connect(self, *, retry: bool = True) -> redis.Redis:
        """A new blocking client on this store's URL (one connection pool)."""
        r = self._redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        # Backoff doubling from 50 ms up to 1 s: about retry_for seconds in all.
        retries = max(1, int(self.retry_for)) if retry else 0
        try:
            conn: redis.Redis = r.Redis.from_url(
                self.url,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
                retry_on_error=[r.exceptions.ConnectionError, r.exceptions.TimeoutError],
                socket_connect_timeout=5.0,
                socket_keepalive=True,
                health_check_interval=30,
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"Cannot use the Redis URL {mask_url(self.url)!r}: {exc}; write it as "
                "redis://[:password@]host:port/db.",
                data={"option": "redis_url", "value": mask_url(self.url)},
            ) from None
        return conn

    def error(self, exc: Exception, doing: str) -> PersistenceError:
        """A redis-py exception as a PersistenceError that says what to do."""
        r = self._redis
        url = mask_url(self.url)
        data = {"backend": "redis", "url": url, "redis_error": f"{type(exc).__name__}: {exc}"}
        if isinstance(exc, r.exceptions.AuthenticationError) or (
            isinstance(exc, r.exceptions.ResponseError)
            and str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM"))
        ):
            return PersistenceError(
                f"Redis at {url} refused the credentials while trying to {doing} ({exc}); put "
                "the right user and password in the URL (redis://user:password@host:port/0).",
                ErrorCode.AUTHENTICATION_FAILED,
                data,
            )
        if isinstance(exc, (r.exceptions.ConnectionError, r.exceptions.TimeoutError)):
            return PersistenceError(
                f"Cannot {doing}: Redis at {url} is unreachable ({exc}); start redis-server "
                "or fix redis_url / $GLEITZEIT_REDIS_URL, then resume the workflow.",
                ErrorCode.PERSISTENCE_CONNECTION_FAILED,
                data,
            )
        return PersistenceError(
            f"Cannot {doing} in Redis at {url}: {exc}.",
            ErrorCode.PERSISTENCE_WRITE_FAILED,
            data,
        )

    async def call(self, fn: Callable[[redis.Redis], Any], doing: str) -> Any:
        """Run ``fn(connection)`` in a worker thread, one call at a time, in order."""
        conn = self._conn
        if conn is None:
            raise PersistenceError(
                "The Redis store is not open; use it inside the client's 'async with'.",
                ErrorCode.PERSISTENCE_CONNECTION_FAILED,
                {"backend": "redis", "url": mask_url(self.url)},
            )
        r = self._redis

        def run() -> Any:
            try:
                return fn(conn)
            except r.exceptions.RedisError as exc:
                raise self.error(exc, doing) from exc

        return await anyio.to_thread.run_sync(run, limiter=self._limiter)

    async def open(self) -> None:
        """Connect and check that Redis answers (one quick try, no long retry)."""
        probe = self.connect(retry=False)
        r = self._redis
        try:
            await anyio.to_thread.run_sync(probe.ping)
        except r.exceptions.RedisError as exc:
            raise self.error(exc, "open the store") from exc
        finally:
            probe.close()
        self._conn = self.connect()
        self._apply = self._conn.register_script(_APPLY)
        for key, text in (
            ("begin", _BEGIN),
            ("complete", _COMPLETE),
            ("reclaim", _RECLAIM),
            ("end", _END),
        ):
            self.scripts[key] = self._conn.register_script(text)

    async def aclose(self) -> None:
        """Stop the heartbeat and close the connections."""
        beat, self._heartbeat = self._heartbeat, None
        if beat is not None:
            await anyio.to_thread.run_sync(beat.stop)
        for conn in (self._beat_conn, self._conn):
            if conn is not None:
                await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)
        self._conn = self._beat_conn = None

    @property
    def redis_module(self) -> Any:
        """The imported ``redis`` package."""
        return self._redis

    async def start_heartbeat(self) -> None:
        """Start this process's heartbeat (once; it stops with the store)."""
        if self._heartbeat is not None:
            return
        self._beat_conn = self.connect()
        beat = Heartbeat(self._beat_conn, f"{self.prefix}:hb:{self.consumer}", self.heartbeat_ttl)
        r = self._redis

        def start() -> None:
            try:
                beat.start()
            except r.exceptions.RedisError as exc:
                raise self.error(exc, "start the heartbeat") from exc

        await anyio.to_thread.run_sync(start, limiter=self._limiter)
        self._heartbeat = beat

    def coordinate(self, workflow: Workflow) -> RedisCoordinator:
        """This process's part in sharing ``workflow``'s run with other processes."""
        return RedisCoordinator(self, workflow)

    async def live_runs(self) -> list[str]:
        """Ids of the runs being shared now (what a worker may join)."""
        key = f"{self.prefix}:live"
        raw: set[bytes] = await self.call(lambda c: c.smembers(key), "list shared runs")
        return sorted(x.decode() for x in raw)

    async def runs_position(self) -> str:
        """Where :meth:`wait_for_runs` starts to hear only of runs from now on."""
        key = f"{self.prefix}:notify"
        got: list[Any] = await self.call(
            lambda c: c.xrevrange(key, count=1), "wait for shared runs"
        )
        return got[0][0].decode() if got else "0-0"

    async def wait_for_runs(self, last: str, timeout: float) -> tuple[str, list[str]]:
        """Wait up to ``timeout`` s for a run to be submitted or shared.

        Returns the position to wait from next and the ids of the runs
        submitted meanwhile (a worker reads their definitions before they start).
        """
        key = f"{self.prefix}:notify"
        r = self._redis
        conn = self._conn
        if conn is None:
            return last, []

        def wait() -> tuple[str, list[str]]:
            try:
                got: Any = conn.xread({key: last}, count=100, block=int(timeout * 1000))
            except r.exceptions.RedisError as exc:
                raise self.error(exc, "wait for shared runs") from exc
            position, submitted = last, []
            for _, entries in got or []:
                for entry_id, fields in entries:
                    position = entry_id.decode()
                    if b"s" in fields:
                        submitted.append(fields[b"s"].decode())
            return position, submitted

        result: tuple[str, list[str]] = await anyio.to_thread.run_sync(wait)
        return result

    # --- events ---------------------------------------------------------------

    def key(self, workflow_id: str, part: str = "") -> str:
        """The key of a workflow's hash (``part``: ``tasks``, ``results``, ``errors``)."""
        base = f"{self.prefix}:wf:{workflow_id}"
        return f"{base}:{part}" if part else base

    def event_args(self, events: Sequence[Event]) -> list[str]:
        """The script arguments of a batch of events."""
        args: list[str] = []
        for e in events:
            kind = e.kind
            if kind is EventKind.WORKFLOW_SUBMITTED:
                assert e.workflow is not None
                payload = _dumps(compact_workflow(e.workflow))
            elif kind is EventKind.TASK_COMPLETED:
                payload = _dumps(e.result or {})
            elif kind is EventKind.TASK_FAILED:
                payload = _dumps(e.error or {})
            elif kind is EventKind.WORKFLOW_FINISHED:
                payload = _dumps(e.error)  # "" when there is none
            else:
                payload = ""
            args += [
                kind.value,
                e.workflow_id,
                e.task_id or "",
                repr(e.at),
                e.status or "",
                payload,
                "" if e.started_at is None else repr(e.started_at),
                str(e.attempt),
            ]
        return args

    async def record(self, events: Sequence[Event]) -> None:
        """Apply a batch of events atomically, in order."""
        if not events:
            return
        args = [self.prefix, str(self.max_finished or 0), *self.event_args(events)]
        await self.call(lambda conn: self._apply(args=args, client=conn), "record events")

    # --- reading --------------------------------------------------------------

    def _read(self, conn: redis.Redis, ids: Sequence[str]) -> list[StoredRun]:
        pipe = conn.pipeline(transaction=False)
        for wid in ids:
            base = self.key(wid)
            pipe.hgetall(base)
            pipe.hgetall(f"{base}:tasks")
            pipe.hgetall(f"{base}:results")
            pipe.hgetall(f"{base}:errors")
            pipe.hgetall(f"{base}:times")
        raw = pipe.execute()
        out = []
        for n in range(len(ids)):
            meta, tasks, results, errors, times = raw[5 * n : 5 * n + 5]
            if not meta:
                continue
            out.append(
                StoredRun(
                    _workflow(meta[b"definition"]),
                    status=WorkflowStatus(meta[b"status"].decode()),
                    task_status={k.decode(): v.decode() for k, v in tasks.items()},
                    results={k.decode(): json.loads(v) for k, v in results.items()},
                    errors={k.decode(): json.loads(v) for k, v in errors.items()},
                    error=_loads(meta.get(b"error")),
                    created_at=float(meta[b"created_at"]),
                    started_at=_float(meta.get(b"started_at")),
                    finished_at=_float(meta.get(b"finished_at")),
                    task_times={k.decode(): [_attempt_time(v)] for k, v in times.items()},
                )
            )
        return out

    async def load(self, workflow_id: str) -> StoredRun | None:
        """The stored state of one workflow, or None."""
        runs = await self.call(lambda conn: self._read(conn, [workflow_id]), "read a workflow")
        return runs[0] if runs else None

    async def load_shared(self, workflow_id: str) -> StoredRun | None:
        """A live shared run's definition and status, for a process joining it.

        Without task states and results: the run's outcome stream holds every
        task done (earlier runs' too), and the joiner reads it from the start.
        """

        def read(conn: redis.Redis) -> dict[bytes, bytes]:
            fields = ("definition", "status", "created_at", "started_at")
            raw: list[bytes | None] = conn.hmget(self.key(workflow_id), fields)  # type: ignore[assignment]
            return {k.encode(): v for k, v in zip(fields, raw, strict=True) if v is not None}

        meta = await self.call(read, "read a workflow")
        if b"definition" not in meta:
            return None

        def build() -> StoredRun:
            with gc_paused():
                workflow = _workflow(meta[b"definition"])
            return StoredRun(
                workflow,
                status=WorkflowStatus(meta[b"status"].decode()),
                created_at=float(meta[b"created_at"]),
                started_at=_float(meta.get(b"started_at")),
            )

        return await anyio.to_thread.run_sync(build)

    async def list_runs(self, limit: int) -> list[StoredRun]:
        """The most recently submitted workflows, newest first."""

        def read(conn: redis.Redis) -> list[StoredRun]:
            raw: list[bytes] = conn.zrevrange(f"{self.prefix}:runs", 0, limit - 1)  # type: ignore[assignment]
            ids = [i.decode() for i in raw]
            return self._read(conn, ids)

        runs: list[StoredRun] = await self.call(read, "list workflows")
        return runs

    def run_lock(self, workflow_id: str) -> None:
        """None: processes that share a Redis share its runs instead of locking them."""
        return None


def _workflow(raw: bytes) -> Workflow:
    """A stored definition: its plan in columns (as written now), or task records."""
    data = json.loads(raw)
    return structure_compact(data) if "plan" in data else structure_workflow(data)


def _attempt_time(raw: bytes) -> AttemptTime:
    start, end, status, attempt = raw.decode().split("|")
    return AttemptTime(float(start), float(end) if end else None, status, int(attempt))


def _float(raw: bytes | None) -> float | None:
    return None if raw is None else float(raw)
