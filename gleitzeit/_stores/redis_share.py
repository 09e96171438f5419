"""Work sharing over Redis: many processes execute one workflow together.

Per shared run (``W`` = ``{prefix}:wf:{id}``):

* ``W:q`` — a stream of ready tasks (field ``t``: the task's index) with the
  consumer group ``g``. A process claims at most its free slots with
  ``XREADGROUP``; a claimed entry stays pending (held) until completed.
* ``W:out`` — a stream of outcomes (``k``: ``completed``/``failed``, ``i``,
  ``p``: result or error JSON; ``w``: a wake-up; ``x``: cancelled). Every
  process reads all of it: that is how outcomes recorded elsewhere reach its
  engine, through the same path as its own.
* ``W:wait`` — unfinished-dependency counters; ``W:dep`` — dependents;
  ``W:c`` — present while the run is shared.
* ``{prefix}:hb:{consumer}`` — each process's heartbeat, refreshed by a thread
  of its own; ``{prefix}:live`` — ids of shared runs (workers look there).

Completing is one Lua script: it refuses an outcome already recorded,
records the result, acknowledges the entry and enqueues the dependents that
became ready. A process whose heartbeat lapsed (it died) has its held entries
put back on the queue by the reclaim script, which runs inside Redis, so two
reclaimers never take the same entry.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from collections.abc import Sequence

    import redis

    from ..core._models import Workflow
    from .redis import RedisStore

__all__ = ["TRACK", "Heartbeat", "RedisCoordinator"]

log = logging.getLogger("gleitzeit.redis")

GROUP: Final = "g"

#: When a task's latest attempt ran, as ``_state._time`` keeps it: the hash
#: ``W:times`` maps a task id to "start|end|status|attempt" (times as Python
#: wrote them, so they read back exactly).
TRACK: Final = """
local function track(wk, tid, status, at, started, attempt)
  local start = started
  if status == 'running' then start = at end
  local prev = redis.call('HGET', wk .. ':times', tid)
  local pstart, pattempt = '', '0'
  if prev then
    local a, _, _, d = string.match(prev, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
    pstart, pattempt = a, d
  end
  if start == '' and prev then start = pstart end
  if start == '' then return end
  if attempt == '' or attempt == '0' then attempt = pattempt end
  local e = at
  if status == 'running' then e = '' end
  redis.call('HSET', wk .. ':times', tid, start .. '|' .. e .. '|' .. status .. '|' .. attempt)
end
"""


#: Start a shared run, or join it. ARGV: prefix, id, time, then per task:
#: id, dependency indexes (comma-separated), dependent indexes.
#: Returns 1 (started), 0 (joined), -1 (unknown workflow), -2 (not running, join only).
_BEGIN: Final = """
local p, wid, at, join_only = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local wk = p .. ':wf:' .. wid
if redis.call('EXISTS', wk) == 0 then return -1 end
if redis.call('HGET', wk, 'status') == 'running' and redis.call('EXISTS', wk .. ':c') == 1 then
  return 0
end
if join_only == '1' then return -2 end
redis.call('DEL', wk .. ':q', wk .. ':out', wk .. ':wait', wk .. ':dep', wk .. ':c')
-- the replay rule's workflow_started: unfinished tasks are pending again
redis.call('HSET', wk, 'status', 'running', 'started_at', at)
redis.call('HDEL', wk, 'finished_at', 'error')
redis.call('ZREM', p .. ':finished', wid)
local tasks = wk .. ':tasks'
local states = redis.call('HGETALL', tasks)
for j = 1, #states, 2 do
  if states[j + 1] ~= 'completed' then
    redis.call('HDEL', tasks, states[j])
    redis.call('HDEL', wk .. ':errors', states[j])
    redis.call('HDEL', wk .. ':times', states[j])
  end
end
redis.call('XGROUP', 'CREATE', wk .. ':q', 'g', '$', 'MKSTREAM')
redis.call('XADD', wk .. ':out', '*', 'k', 'w')
local ids = {}
local n = (#ARGV - 4) / 3
for k = 0, n - 1 do ids[k] = ARGV[5 + 3 * k] end
for k = 0, n - 1 do
  local tid, deps, dependents = ARGV[5 + 3 * k], ARGV[6 + 3 * k], ARGV[7 + 3 * k]
  if dependents ~= '' then redis.call('HSET', wk .. ':dep', k, dependents) end
  if redis.call('HGET', tasks, tid) ~= 'completed' then
    local waiting = 0
    for d in string.gmatch(deps, '[^,]+') do
      if redis.call('HGET', tasks, ids[tonumber(d)]) ~= 'completed' then waiting = waiting + 1 end
    end
    if waiting == 0 then
      redis.call('XADD', wk .. ':q', '*', 't', k)
    else
      redis.call('HSET', wk .. ':wait', k, waiting)
    end
  end
end
redis.call('SET', wk .. ':c', '1')
redis.call('SADD', p .. ':live', wid)
redis.call('XADD', p .. ':notify', 'MAXLEN', '~', '1000', '*', 'w', wid)
return 1
"""

#: Record outcomes, then claim up to ``free`` ready tasks for ``consumer``.
#: ARGV: prefix, id, consumer, free, then per outcome: entry id, index, task
#: id, status, payload, time, start of the attempt, attempt. Returns {one 1
#: (recorded) or 0 (already final) per outcome, {entry id, index, ...} of the
#: claimed tasks}.
_COMPLETE: Final = (
    TRACK
    + """
local p, wid, consumer, free = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local wk = p .. ':wf:' .. wid
local q, tasks = wk .. ':q', wk .. ':tasks'
local out = {}
local n = (#ARGV - 4) / 8
for k = 0, n - 1 do
  local b = 5 + 8 * k
  local entry, idx, tid = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local status, payload = ARGV[b + 3], ARGV[b + 4]
  local at, started, attempt = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7]
  if entry ~= '' then redis.call('XACK', q, 'g', entry) end
  local now = redis.call('HGET', tasks, tid)
  if now == 'completed' or now == 'failed' or redis.call('EXISTS', wk .. ':c') == 0 then
    out[k + 1] = 0
  else
    redis.call('HSET', tasks, tid, status)
    track(wk, tid, status, at, started, attempt)
    if status == 'completed' then
      redis.call('HSET', wk .. ':results', tid, payload)
      redis.call('HDEL', wk .. ':errors', tid)
      local dependents = redis.call('HGET', wk .. ':dep', idx)
      if dependents then
        for j in string.gmatch(dependents, '[^,]+') do
          if redis.call('HINCRBY', wk .. ':wait', j, -1) <= 0 then
            redis.call('HDEL', wk .. ':wait', j)
            redis.call('XADD', q, '*', 't', j)
          end
        end
      end
    else
      redis.call('HSET', wk .. ':errors', tid, payload)
    end
    redis.call('XADD', wk .. ':out', '*', 'k', status, 'i', idx, 'p', payload)
    out[k + 1] = 1
  end
end
local claimed = {}
if free > 0 and redis.call('EXISTS', wk .. ':c') == 1 then
  local got = redis.call('XREADGROUP', 'GROUP', 'g', consumer, 'COUNT', free, 'STREAMS', q, '>')
  if got then
    for _, e in ipairs(got[1][2]) do
      claimed[#claimed + 1] = e[1]
      claimed[#claimed + 1] = e[2][2]
    end
  end
end
return {out, claimed}
"""
)

#: Put back the entries held by consumers whose heartbeat lapsed (ARGV[4] = 1:
#: only this consumer, ARGV[3], handing its own back). Returns how many.
_RECLAIM: Final = """
local p, wid, me, own = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local wk = p .. ':wf:' .. wid
local q = wk .. ':q'
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', q, 'g')
if not ok then return 0 end
local moved = 0
for _, c in ipairs(consumers) do
  local name, pending = nil, 0
  for j = 1, #c, 2 do
    if c[j] == 'name' then name = c[j + 1] elseif c[j] == 'pending' then pending = c[j + 1] end
  end
  local take
  if own == '1' then
    take = name == me
  else
    take = name ~= me and redis.call('EXISTS', p .. ':hb:' .. name) == 0
  end
  if take then
    if pending > 0 then
      local entries = redis.call('XPENDING', q, 'g', '-', '+', pending, name)
      for _, e in ipairs(entries) do
        local msg = redis.call('XRANGE', q, e[1], e[1])
        if #msg > 0 then redis.call('XADD', q, '*', 't', msg[1][2][2]) end
        redis.call('XACK', q, 'g', e[1])
        moved = moved + 1
      end
    end
    redis.call('XGROUP', 'DELCONSUMER', q, 'g', name)
  end
end
if moved > 0 then redis.call('XADD', wk .. ':out', '*', 'k', 'w') end
return moved
"""

#: The run ended here: keep its shared keys a while for slower readers.
_END: Final = """
local p, wid, cancel, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local wk = p .. ':wf:' .. wid
if cancel == '1' and redis.call('EXISTS', wk .. ':c') == 1 then
  redis.call('XADD', wk .. ':out', '*', 'k', 'x')
end
redis.call('SREM', p .. ':live', wid)
for _, suffix in ipairs({':q', ':out', ':wait', ':dep', ':c'}) do
  redis.call('EXPIRE', wk .. suffix, ttl)
end
return 1
"""


def consumer_name() -> str:
    """A name for this process among the consumers: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Heartbeat:
    """A thread that keeps ``key`` alive (TTL ``ttl``), refreshing it every ``ttl / 4``.

    Its own thread and connection: an inline task holding the event loop for
    seconds cannot let it lapse, so a live process's tasks are never taken.
    """

    def __init__(self, conn: redis.Redis, key: str, ttl: float) -> None:
        self.conn = conn
        self.key = key
        self.ttl = ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<Heartbeat {self.key} ttl={self.ttl:g}s>"

    def start(self) -> None:
        """Set the key now, then keep refreshing it from a thread."""
        self.conn.set(self.key, "1", px=int(self.ttl * 1000))
        self._thread = threading.Thread(target=self._run, name="gleitzeit-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.conn.set(self.key, "1", px=int(self.ttl * 1000))
            except Exception:  # a lost connection: the next beat tries again
                log.warning("heartbeat %s: could not reach Redis", self.key)

    def stop(self) -> None:
        """Stop the thread and delete the key (this process no longer holds work)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.conn.delete(self.key)
        except Exception:  # pragma: no cover - Redis gone: the key expires by itself
            log.warning("heartbeat %s: could not delete the key", self.key)


class RedisCoordinator:
    """One process's part in one shared run (see the module docstring)."""

    remote = True

    def __init__(self, store: RedisStore, workflow: Workflow) -> None:
        self.store = store
        self.workflow = workflow
        self.base = store.key(workflow.id)
        self.consumer = store.consumer
        #: Tasks this process holds (claimed, outcome not yet recorded).
        self.held = 0
        self._last_out = "0"
        self._limiter = anyio.CapacityLimiter(1)  # the poller's own thread
        self._conn: redis.Redis | None = None
        self._scripts = store.scripts

    def __repr__(self) -> str:
        return f"<RedisCoordinator {self.workflow.id} consumer={self.consumer} held={self.held}>"

    async def begin(self, at: float, *, join_only: bool = False) -> int:
        """Start the shared run (1) or join it (0); -2: not running (join_only)."""
        wf = self.workflow
        index = {t.id: i for i, t in enumerate(wf.tasks)}
        dependents: list[list[str]] = [[] for _ in wf.tasks]
        args = [self.store.prefix, wf.id, repr(at), "1" if join_only else "0"]
        for i, t in enumerate(wf.tasks):
            for d in t.dependencies:
                dependents[index[d]].append(str(i))
        for i, t in enumerate(wf.tasks):
            deps = ",".join(str(index[d]) for d in t.dependencies)
            args += [t.id, deps, ",".join(dependents[i])]
        begin = self._scripts["begin"]
        got = await self.store.call(lambda c: begin(args=args, client=c), "start a shared run")
        await self.store.start_heartbeat()
        self._conn = self.store.connect()
        return int(got)

    async def complete(
        self, outcomes: Sequence[tuple[str, int, str, str, str, float, int]], free: int
    ) -> tuple[list[int], list[tuple[str, int]]]:
        """Record outcomes ``(entry, index, task id, status, payload, start, attempt)``
        and claim up to ``free`` ready tasks, in one script call.

        Returns one flag per outcome (1: recorded now, 0: another process had
        recorded it) and the claimed ``(entry id, index)`` pairs.
        """
        args = [self.store.prefix, self.workflow.id, self.consumer, str(max(0, free))]
        now = repr(time.time())
        for entry, i, tid, status, payload, start, attempt in outcomes:
            args += [entry, str(i), tid, status, payload, now, repr(start), str(attempt)]
        complete = self._scripts["complete"]
        flags, claimed = await self.store.call(
            lambda c: complete(args=args, client=c), "record outcomes"
        )
        pairs = [(claimed[j].decode(), int(claimed[j + 1])) for j in range(0, len(claimed), 2)]
        return [int(x) for x in flags], pairs

    async def wake(self) -> None:
        """Add a wake-up to the outcome stream (ends this process's blocking read at once)."""
        out = f"{self.base}:out"
        await self.store.call(lambda c: c.xadd(out, {"k": "w"}), "wake the readers")

    async def ack(self, entries: Sequence[str]) -> None:
        """Acknowledge entries of tasks that need no run (already finished)."""
        q = f"{self.base}:q"
        await self.store.call(lambda c: c.xack(q, GROUP, *entries), "acknowledge tasks")

    def poll(self, free: int, block_ms: int, reclaim: bool) -> tuple[list[Any], list[Any]]:
        """(Worker thread) Claim up to ``free`` ready tasks and read new outcomes.

        Blocks up to ``block_ms`` for a new outcome when there is nothing.
        """
        conn = self._conn
        assert conn is not None
        q, out = f"{self.base}:q", f"{self.base}:out"
        r = self.store.redis_module
        try:
            if reclaim:
                self._scripts["reclaim"](
                    args=[self.store.prefix, self.workflow.id, self.consumer, "0"], client=conn
                )
            pipe = conn.pipeline(transaction=False)
            if free > 0:
                pipe.xreadgroup(GROUP, self.consumer, {q: ">"}, count=free)
            pipe.xread({out: self._last_out}, count=10000)
            got = pipe.execute(raise_on_error=False)
            claimed = got[0] if free > 0 else None
            outs = got[-1]
            if isinstance(claimed, Exception):  # the run's keys are gone (ended)
                claimed = None
            if isinstance(outs, Exception):
                raise outs
            if not claimed and not outs:
                outs = conn.xread({out: self._last_out}, count=10000, block=block_ms)
        except r.exceptions.RedisError as exc:
            raise self.store.error(exc, "read the shared queue") from exc
        claims = [
            (e[0].decode(), int(e[1][b"t"])) for _, entries in (claimed or []) for e in entries
        ]
        events = []
        for _, entries in outs or []:
            for entry_id, fields in entries:
                self._last_out = entry_id.decode()
                events.append(fields)
        return claims, events

    async def next(self, free: int, reclaim: bool) -> tuple[list[Any], list[Any]]:
        """:meth:`poll` in this coordinator's thread (waits at most half a second)."""
        result: tuple[list[Any], list[Any]] = await anyio.to_thread.run_sync(
            self.poll, free, 500, reclaim, limiter=self._limiter
        )
        return result

    async def end(self, *, cancel: bool, hand_back: bool) -> None:
        """Leave the run: hand back held tasks, or mark it ended (``cancel``: for everyone)."""
        args = [self.store.prefix, self.workflow.id]
        try:
            if hand_back:
                reclaim = self._scripts["reclaim"]
                own = [*args, self.consumer, "1"]
                await self.store.call(lambda c: reclaim(args=own, client=c), "hand back tasks")
            else:
                end = self._scripts["end"]
                fin = [*args, "1" if cancel else "0", "600"]
                await self.store.call(lambda c: end(args=fin, client=c), "end a shared run")
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()


def decode_outcome(fields: dict[bytes, bytes]) -> tuple[str, int, Any]:
    """(kind, index, payload) of an outcome stream entry (index -1 for wake-ups)."""
    kind = fields[b"k"].decode()
    if kind in ("completed", "failed"):
        return kind, int(fields[b"i"]), json.loads(fields[b"p"])
    return kind, -1, None
