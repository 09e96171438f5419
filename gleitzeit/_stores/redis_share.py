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

from ..core._plan import Plan

_pack: Any
try:  # hiredis packs a command's arguments in C (an extra of gleitzeit[redis])
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - redis-py without hiredis
    _pack = None

if TYPE_CHECKING:
    from collections.abc import Sequence

    import redis

    from ..core._models import Workflow
    from .redis import RedisStore

__all__ = ["TRACK", "Heartbeat", "RedisCoordinator", "decode_outcomes", "to_json"]

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


#: Start a shared run, or join it. ARGV: prefix, id, time, join only (1/0),
#: consumer, then (to start) the tasks, in one of two forms:
#:
#: * a run with no task completed yet: ``fast``, the ready tasks' indexes
#:   (comma-separated), the count ``m`` of the arguments that follow as
#:   ``W:wait`` pairs (index, unfinished dependencies), then ``W:dep`` pairs
#:   (index, dependent indexes comma-separated) — straight into variadic
#:   commands;
#: * any run: the tasks as JSON, ``[[id, [dependency indexes], "dependent
#:   indexes, comma-separated"], ...]``. Tasks completed by an earlier run go
#:   onto ``W:out`` first (as the starter's), so the outcome stream alone
#:   tells a joiner every task that is done.
#:
#: Returns 1 (started), 0 (joined), -1 (unknown workflow), -2 (not running,
#: join only), 3 (not running, no task completed: call again with the tasks,
#: either form), 2 (not running: call again with the tasks as JSON).
_BEGIN: Final = """
local p, wid, at, join_only, consumer = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local wk = p .. ':wf:' .. wid
if redis.call('EXISTS', wk) == 0 then return -1 end
if redis.call('HGET', wk, 'status') == 'running' and redis.call('EXISTS', wk .. ':c') == 1 then
  return 0
end
if join_only == '1' then return -2 end
if ARGV[6] == nil then
  if redis.call('HLEN', wk .. ':tasks') == 0 then return 3 end
  return 2
end
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
-- no task completed yet (a new run): no need to look any up
local fresh = redis.call('HLEN', tasks) == 0
if ARGV[6] == 'fast' and not fresh then return 2 end
redis.call('XGROUP', 'CREATE', wk .. ':q', 'g', '$', 'MKSTREAM')
redis.call('XADD', wk .. ':out', '*', 'k', 'w')
local q, dep, wait = wk .. ':q', wk .. ':dep', wk .. ':wait'
if ARGV[6] == 'fast' then
  local m = tonumber(ARGV[8])
  for s = 9, 8 + m, 1000 do
    redis.call('HSET', wait, unpack(ARGV, s, math.min(8 + m, s + 999)))
  end
  for s = 9 + m, #ARGV, 1000 do
    redis.call('HSET', dep, unpack(ARGV, s, math.min(#ARGV, s + 999)))
  end
  for k in string.gmatch(ARGV[7], '%d+') do redis.call('XADD', q, '*', 't', k) end
else
  local spec = cjson.decode(ARGV[6])
  if not fresh then
    local idxs, payloads = {}, {}
    for k = 0, #spec - 1 do
      local tid = spec[k + 1][1]
      if redis.call('HGET', tasks, tid) == 'completed' then
        idxs[#idxs + 1] = k
        payloads[#payloads + 1] = redis.call('HGET', wk .. ':results', tid) or '{}'
      end
      if #idxs == 1000 or (k == #spec - 1 and #idxs > 0) then
        redis.call('XADD', wk .. ':out', '*', 'k', 'b', 'c', consumer, 'i', table.concat(idxs, ','),
          's', string.rep('c', #idxs), 'p', '[' .. table.concat(payloads, ',') .. ']')
        idxs, payloads = {}, {}
      end
    end
  end
  for k = 0, #spec - 1 do
    local t = spec[k + 1]
    local deps, dependents = t[2], t[3]
    if dependents ~= '' then redis.call('HSET', dep, k, dependents) end
    if fresh or redis.call('HGET', tasks, t[1]) ~= 'completed' then
      local waiting = #deps
      if not fresh then
        waiting = 0
        for _, d in ipairs(deps) do
          if redis.call('HGET', tasks, spec[d + 1][1]) ~= 'completed' then waiting = waiting + 1 end
        end
      end
      if waiting == 0 then
        redis.call('XADD', q, '*', 't', k)
      else
        redis.call('HSET', wait, k, waiting)
      end
    end
  end
end
redis.call('SET', wk .. ':c', '1')
redis.call('SADD', p .. ':live', wid)
redis.call('XADD', p .. ':notify', 'MAXLEN', '~', '1000', '*', 'w', wid)
return 1
"""

#: Record a batch of outcomes, then claim up to ``free`` ready tasks for
#: ``consumer``. ARGV (``n`` outcomes, ``c`` of them completed, ``a`` entries
#: to acknowledge):
#:
#: 1. prefix, id, consumer, free, time, ``n``, ``c``, ``a``;
#: 9. the fields of the batch's ``W:out`` entry: indexes (comma-separated),
#:    ``c``/``f`` per outcome, the payloads as one JSON array, start and
#:    attempt per outcome (space-separated);
#: 13. the ``a`` entry ids to acknowledge, the ``n`` task ids, then ready-made
#:    hash pairs: ``W:tasks`` (task id, status) for every outcome, ``W:times``
#:    (task id, "start|end|status|attempt"), ``W:results`` for the completed
#:    and ``W:errors`` for the failed ones (task id, payload).
#:
#: When no outcome of the batch was recorded before (the rule), the pairs go
#: into variadic commands as they are; otherwise the outcomes already final
#: are left out, one by one. The recorded outcomes go onto ``W:out`` as one
#: entry (``k`` = ``b``, ``c`` = consumer, ``i``, ``s``, ``p``, ``a``: the
#: fields above). Returns {one 1 (recorded) or 0 (already final) per
#: outcome, {entry id, index, ...} of the claimed tasks}.
_COMPLETE: Final = """
local p, wid, consumer, free, at = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local n, c, a = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local wk = p .. ':wf:' .. wid
local q, tasks = wk .. ':q', wk .. ':tasks'
local live = redis.call('EXISTS', wk .. ':c') == 1
-- one command per chunk of src[first..last] (Lua's unpack has a limit)
local function span(cmd, key, src, first, last, out)
  for s = first, last, 1000 do
    local got = redis.call(cmd, key, unpack(src, s, math.min(last, s + 999)))
    if out then for _, v in ipairs(got) do out[#out + 1] = v end end
  end
end
for s = 13, 12 + a, 1000 do
  redis.call('XACK', q, 'g', unpack(ARGV, s, math.min(12 + a, s + 999)))
end
local b = 13 + a
local tp, tm = b + n, b + 3 * n
local rs = b + 5 * n
local es = rs + 2 * c
local flags = {}
local now = {}
if n > 0 then span('HMGET', tasks, ARGV, b, b + n - 1, now) end
local fresh = live
for k = 1, n do
  if now[k] == 'completed' or now[k] == 'failed' then fresh = false end
end
-- what to write: ARGV itself (the rule), or the outcomes not final yet
local T, M, R, E = ARGV, ARGV, ARGV, ARGV
local t1, t2, m1, m2, r1, r2, e1, e2 = tp, tm - 1, tm, rs - 1, rs, es - 1, es, #ARGV
local I, K, P, B = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local recorded = n
if fresh then
  for k = 1, n do flags[k] = 1 end
else
  T, M, R, E = {}, {}, {}, {}
  local idxs, kinds, payloads, begun = {}, {}, {}, {}
  local tok = {}
  for x in string.gmatch(ARGV[12], '%S+') do tok[#tok + 1] = x end
  local ci, fi, k = 0, 0, 0
  recorded = 0
  for idx in string.gmatch(ARGV[9], '[^,]+') do
    k = k + 1
    local kind = string.sub(ARGV[10], k, k)
    local src
    if kind == 'c' then
      ci = ci + 1
      src = rs + 2 * (ci - 1)
    else
      fi = fi + 1
      src = es + 2 * (fi - 1)
    end
    if not live or now[k] == 'completed' or now[k] == 'failed' then
      flags[k] = 0
    else
      flags[k] = 1
      recorded = recorded + 1
      local tid = ARGV[b + k - 1]
      T[#T + 1] = tid
      T[#T + 1] = ARGV[tp + 2 * k - 1]
      M[#M + 1] = tid
      M[#M + 1] = ARGV[tm + 2 * k - 1]
      if kind == 'c' then R[#R + 1] = tid; R[#R + 1] = ARGV[src + 1]
      else E[#E + 1] = tid; E[#E + 1] = ARGV[src + 1] end
      idxs[#idxs + 1] = idx
      kinds[#kinds + 1] = kind
      payloads[#payloads + 1] = ARGV[src + 1]
      begun[#begun + 1] = tok[2 * k - 1] .. ' ' .. tok[2 * k]
    end
  end
  t1, t2, m1, m2, r1, r2, e1, e2 = 1, #T, 1, #M, 1, #R, 1, #E
  I, K, B = table.concat(idxs, ','), table.concat(kinds), table.concat(begun, ' ')
  P = '[' .. table.concat(payloads, ',') .. ']'
end
if recorded > 0 then
  span('HSET', tasks, T, t1, t2)
  span('HSET', wk .. ':times', M, m1, m2)
  if r2 >= r1 then
    span('HSET', wk .. ':results', R, r1, r2)
    if redis.call('EXISTS', wk .. ':errors') == 1 then
      for s = r1, r2, 2 do redis.call('HDEL', wk .. ':errors', R[s]) end
    end
    if redis.call('EXISTS', wk .. ':dep') == 1 then
      local completed, k = {}, 0
      for idx in string.gmatch(I, '[^,]+') do
        k = k + 1
        if string.sub(K, k, k) == 'c' then completed[#completed + 1] = idx end
      end
      local dependents = {}
      span('HMGET', wk .. ':dep', completed, 1, #completed, dependents)
      for _, list in ipairs(dependents) do
        if list then
          for j in string.gmatch(list, '[^,]+') do
            if redis.call('HINCRBY', wk .. ':wait', j, -1) <= 0 then
              redis.call('HDEL', wk .. ':wait', j)
              redis.call('XADD', q, '*', 't', j)
            end
          end
        end
      end
    end
  end
  if e2 >= e1 then span('HSET', wk .. ':errors', E, e1, e2) end
  redis.call('XADD', wk .. ':out', '*', 'k', 'b', 'c', consumer, 'i', I, 's', K, 'p', P, 'a', B)
end
local claimed = {}
if free > 0 and live then
  local got = redis.call('XREADGROUP', 'GROUP', 'g', consumer, 'COUNT', free, 'STREAMS', q, '>')
  if got then
    for _, e in ipairs(got[1][2]) do
      claimed[#claimed + 1] = e[1]
      claimed[#claimed + 1] = e[2][2]
    end
  end
end
return {flags, claimed}
"""

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
        #: Free slots the poller is claiming for right now.
        self.reserved = 0
        #: A script recording outcomes could not claim for the poller's reservation.
        self.missed = False
        #: The last script call claimed tasks (the poller may look less often).
        self.busy = False
        #: Set when a script call claimed nothing: the poller looks at once.
        self.idle = anyio.Event()
        self._last_out = "0"
        self._limiter = anyio.CapacityLimiter(1)  # the poller's own thread
        self._conn: redis.Redis | None = None
        self._scripts = store.scripts
        self.me = self.consumer.encode()

    def __repr__(self) -> str:
        return f"<RedisCoordinator {self.workflow.id} consumer={self.consumer} held={self.held}>"

    async def begin(self, at: float, *, join_only: bool = False) -> int:
        """Start the shared run (1) or join it (0); -2: not running (join_only).

        A joiner sends no task list: a live run has its queue already.
        """
        wf = self.workflow
        head = [self.store.prefix, wf.id, repr(at), "1" if join_only else "0", self.consumer]
        begin = self._scripts["begin"]
        got = await self.store.call(lambda c: begin(args=head, client=c), "join a shared run")
        if got == 3:  # not running, nothing done yet: start it with the tasks' counts
            args = [*head, *self._fresh_spec()]
            got = await self.store.call(lambda c: begin(args=args, client=c), "start a shared run")
        if got == 2:  # not running: start it, with the tasks
            args = [*head, self._task_spec()]
            got = await self.store.call(lambda c: begin(args=args, client=c), "start a shared run")
        await self.store.start_heartbeat()
        self._conn = self.store.connect()
        return int(got)

    @property
    def plan(self) -> Plan:
        """The workflow's plan (a loaded workflow's own; one built by hand is planned)."""
        return Plan.from_tasks(self.workflow.tasks)

    def _fresh_spec(self) -> list[str]:
        """The tasks of a run with none done yet, as ``_BEGIN``'s ``fast`` form takes them."""
        plan = self.plan
        start, index = plan.dep_start, plan.dep_index
        n = len(plan)
        if not index:  # no dependencies at all: every task is ready
            return ["fast", ",".join(map(str, range(n))), "0"]
        ready: list[int] = []
        wait: list[str] = []
        for i in range(n):
            count = start[i + 1] - start[i]
            if count:
                wait += (str(i), str(count))
            else:
                ready.append(i)
        dstart, dindex = plan.dependents()
        dependents: list[str] = []
        for i in range(n):
            lo, hi = dstart[i], dstart[i + 1]
            if lo != hi:
                dependents += (str(i), ",".join(map(str, dindex[lo:hi])))
        return ["fast", ",".join(map(str, ready)), str(len(wait)), *wait, *dependents]

    def _task_spec(self) -> str:
        """The tasks as ``_BEGIN`` takes them (JSON)."""
        plan = self.plan
        ids, start, index = plan.ids, plan.dep_start, plan.dep_index
        dstart, dindex = plan.dependents()
        spec = [
            [
                ids[i],
                list(index[start[i] : start[i + 1]]),
                ",".join(map(str, dindex[dstart[i] : dstart[i + 1]])),
            ]
            for i in range(len(ids))
        ]
        return to_json(spec)

    async def complete(
        self, outcomes: Sequence[tuple[str, int, str, bool, str, float, int]], free: int
    ) -> tuple[list[int], list[tuple[str, int]]]:
        """Record outcomes ``(entry, index, task id, completed, payload, start, attempt)``
        and claim up to ``free`` ready tasks, in one script call.

        Returns one flag per outcome (1: recorded now, 0: another process had
        recorded it) and the claimed ``(entry id, index)`` pairs.
        """
        at = repr(time.time())
        acks = [row[0] for row in outcomes if row[0]]
        tids = [row[2] for row in outcomes]
        states: list[str] = []
        times: list[str] = []
        results: list[str] = []
        errors: list[str] = []
        for _, _, tid, ok, payload, start, attempt in outcomes:
            status = "completed" if ok else "failed"
            states += (tid, status)
            times += (tid, f"{start!r}|{at}|{status}|{attempt}")
            if ok:
                results += (tid, payload)
            else:
                errors += (tid, payload)
        args = [
            self.store.prefix,
            self.workflow.id,
            self.consumer,
            str(max(0, free)),
            at,
            str(len(outcomes)),
            str(len(results) // 2),
            str(len(acks)),
            ",".join([str(row[1]) for row in outcomes]),
            "".join(["c" if row[3] else "f" for row in outcomes]),
            "[" + ",".join([row[4] for row in outcomes]) + "]",
            " ".join([f"{row[5]!r} {row[6]}" for row in outcomes]),
            *acks,
            *tids,
            *states,
            *times,
            *results,
            *errors,
        ]
        flags, claimed = await self.store.call(
            lambda c: self._script(c, "complete", args), "record outcomes"
        )
        pairs = [(claimed[j].decode(), int(claimed[j + 1])) for j in range(0, len(claimed), 2)]
        return flags, pairs

    def _script(self, conn: redis.Redis, name: str, args: list[str]) -> Any:
        """(Worker thread) Run script ``name`` with ``args``, packed in one go by hiredis.

        redis-py encodes a command argument by argument in Python, which cost
        more than the script itself for a batch's hundreds of arguments. With
        the connection's own retry policy, like any other command.
        """
        script = self._scripts[name]
        if _pack is None:  # pragma: no cover - redis-py without hiredis
            return script(args=args, client=conn)
        packed = _pack(("EVALSHA", script.sha, "0", *args))
        pool = conn.connection_pool
        connection: Any = pool.get_connection()

        def send() -> Any:
            connection.send_packed_command([packed])
            return connection.read_response()

        try:
            try:
                return connection.retry.call_with_retry(send, lambda _: connection.disconnect())
            except self.store.redis_module.exceptions.NoScriptError:
                conn.script_load(script.script)  # Redis lost its script cache (a restart)
                return connection.retry.call_with_retry(send, lambda _: connection.disconnect())
        finally:
            pool.release(connection)

    async def wake(self) -> None:
        """Add a wake-up to the outcome stream (ends this process's blocking read at once)."""
        out = f"{self.base}:out"
        await self.store.call(lambda c: c.xadd(out, {"k": "w"}), "wake the readers")

    async def recorded(self, task_ids: Sequence[str]) -> list[tuple[str | None, Any]]:
        """Each task's recorded status and result or error (``None``, ``None``: none)."""
        base = self.base

        def read(conn: redis.Redis) -> list[Any]:
            pipe = conn.pipeline(transaction=False)
            pipe.hmget(f"{base}:tasks", task_ids)
            pipe.hmget(f"{base}:results", task_ids)
            pipe.hmget(f"{base}:errors", task_ids)
            return pipe.execute()

        states, results, errors = await self.store.call(read, "read recorded outcomes")
        out: list[tuple[str | None, Any]] = []
        for state, result, error in zip(states, results, errors, strict=True):
            status = None if state is None else state.decode()
            raw = result if status == "completed" else error if status == "failed" else None
            out.append((status, None if raw is None else json.loads(raw)))
        return out

    async def ack(self, entries: Sequence[str]) -> None:
        """Acknowledge entries of tasks that need no run (already finished)."""
        q = f"{self.base}:q"
        await self.store.call(lambda c: c.xack(q, GROUP, *entries), "acknowledge tasks")

    def poll(self, free: int, block_ms: int, reclaim: bool) -> tuple[list[Any], list[Any]]:
        """(Worker thread) Claim up to ``free`` ready tasks and read new outcomes.

        Blocks up to ``block_ms`` (if not 0) for a new outcome when there is nothing.
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
            if not claimed and not outs and block_ms:
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

    async def next(self, free: int, reclaim: bool, *, wait: bool) -> tuple[list[Any], list[Any]]:
        """:meth:`poll` in this coordinator's thread (``wait``: at most half a second)."""
        result: tuple[list[Any], list[Any]] = await anyio.to_thread.run_sync(
            self.poll, free, 500 if wait else 0, reclaim, limiter=self._limiter
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


#: JSON text as gleitzeit stores it (one encoder, built once).
to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr).encode


def decode_outcomes(
    fields: dict[bytes, bytes], me: bytes
) -> list[tuple[str, int, Any, tuple[float, int] | None]]:
    """``(kind, index, payload, (start, attempt) or None)`` of an outcome stream entry.

    Entries this process (consumer ``me``) wrote are skipped: it applied them
    when it recorded them. A cancellation is ``("x", -1, None, None)``; a
    wake-up has no outcomes. Outcomes of an earlier run (put first when a
    run is resumed) have no start.
    """
    kind = fields[b"k"]
    if kind == b"b":
        if fields[b"c"] == me:
            return []
        payloads = json.loads(fields[b"p"])
        kinds = fields[b"s"].decode()
        idxs = fields[b"i"].split(b",")
        raw = fields.get(b"a")
        if raw is None:
            return [
                ("completed" if k == "c" else "failed", int(i), payload, None)
                for k, i, payload in zip(kinds, idxs, payloads, strict=True)
            ]
        tokens = raw.split()
        begun = [(float(tokens[j]), int(tokens[j + 1])) for j in range(0, len(tokens), 2)]
        return [
            ("completed" if k == "c" else "failed", int(i), payload, b)
            for k, i, payload, b in zip(kinds, idxs, payloads, begun, strict=True)
        ]
    if kind == b"x":
        return [("x", -1, None, None)]
    return []
