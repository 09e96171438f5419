"""python/execute: run trusted Python code in warm worker processes or inline.

Default isolation is ``"process"``: a pool of warm worker processes, each in
its own session so a timeout kills the worker *and* anything it started; a
killed worker is replaced on demand. ``"inline"`` runs the code in the
engine's own process (fast, for trusted code; a timeout cannot interrupt a
busy loop there). This is not a sandbox: the code can do anything the
calling user can.
"""

from __future__ import annotations

import builtins
import io
import logging
import marshal
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread

from ..core._json import jsonable
from ..core._methods import MethodSpec
from ..core.errors import ErrorCode, ProviderError, TaskError
from . import BaseProvider
from ._frames import HEADER, MAX_FRAME, encode
from ._runner import run_code

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from types import CodeType

    from anyio.abc import Process

    from . import Call

__all__ = ["PYTHON_SPECS", "PythonProvider", "WorkerPool", "resolve_path"]

log = logging.getLogger("gleitzeit.python")

#: The methods this provider serves.
PYTHON_SPECS: Final = (
    MethodSpec(
        "python/execute",
        {
            "code": (str,),
            "file": (str,),
            "args": (dict,),
            "context": (dict,),
            "timeout": (int, float),
        },
        one_of=(("code", "file"),),
        at_most_one=(("args", "context"),),
        check=lambda params, source_dir: _check_file(params, source_dir),
        description="Run trusted Python code or a script; its global 'result' is the result.",
        check_keys=frozenset({"file"}),
    ),
)

#: Compiled inline programs kept by source (the cache is emptied when full).
_PROGRAMS_MAX: Final = 1024
#: Result values that are JSON-safe as they are.
_PLAIN: Final = (str, int, bool, type(None))

#: The folder holding the gleitzeit package, so workers import this very copy.
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])


def _group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` exists in a state other than zombie."""
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc: trust the kill
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def resolve_path(path: str, source_dir: str | None) -> Path:
    """Resolve a relative path against the workflow's folder if it exists there, else the CWD."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    if source_dir is not None:
        candidate = Path(source_dir) / p
        if candidate.exists():
            return candidate
    return Path.cwd() / p


def _looked_in(file: str, source_dir: str | None) -> list[str]:
    """The places :func:`resolve_path` tries for a relative ``file``, in order."""
    p = Path(file).expanduser()
    if p.is_absolute():
        return [str(p)]
    looked = [str(Path(source_dir) / p)] if source_dir is not None else []
    looked.append(str(Path.cwd() / p))
    return list(dict.fromkeys(looked))


def _check_file(params: Mapping[str, Any], source_dir: str | None) -> Iterator[tuple[str, str]]:
    """A literal ``file`` that does not exist is a problem before anything runs."""
    file = params.get("file")
    if not isinstance(file, str) or "${" in file:
        return  # missing or wrong type: reported elsewhere; a reference: checked at run time
    if not resolve_path(file, source_dir).is_file():
        yield (
            "params.file",
            f"python file {file!r} not found (looked in "
            f"{' and '.join(_looked_in(file, source_dir))}); fix the 'file' path",
        )


class _Worker:
    """One worker process, its two pipes and the bytes read from it so far."""

    __slots__ = ("buffer", "cwd", "process", "reader", "writer")

    def __init__(self, process: Process, writer: int, reader: int) -> None:
        self.process = process
        self.writer = writer  # the worker's stdin (non-blocking)
        self.reader = reader  # the worker's protocol channel (non-blocking)
        self.buffer = bytearray()
        #: The working directory last sent to the worker.
        self.cwd: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def send(self, data: bytes) -> None:
        """Write all of ``data`` (raises BrokenPipeError once the worker is gone)."""
        view = memoryview(data)
        while True:
            try:
                written = os.write(self.writer, view)
            except BlockingIOError:
                written = 0
            view = view[written:]
            if not view:
                return
            await anyio.wait_writable(self.writer)

    async def receive(self) -> Any:
        """The next frame's value (raises EndOfStream once the worker is gone)."""
        buffer = self.buffer
        while True:
            if len(buffer) >= HEADER:
                size = int.from_bytes(buffer[:HEADER], "big")
                if size > MAX_FRAME:
                    raise TaskError(
                        f"A python task's result is larger than {MAX_FRAME} bytes.",
                        ErrorCode.TASK_EXECUTION_FAILED,
                    )
                end = HEADER + size
                if len(buffer) >= end:
                    with memoryview(buffer) as view:
                        value = marshal.loads(view[HEADER:end])
                    del buffer[:end]
                    return value
            try:
                chunk = os.read(self.reader, max(1 << 16, len(buffer)))
            except BlockingIOError:
                await anyio.wait_readable(self.reader)
                continue
            if not chunk:
                raise anyio.EndOfStream
            buffer += chunk

    def _close_pipes(self) -> None:
        for fd in (self.writer, self.reader):
            if fd >= 0:
                anyio.notify_closing(fd)
                os.close(fd)
        self.writer = self.reader = -1

    async def kill(self) -> None:
        """Kill the worker's whole process group and reap it (even when cancelled)."""
        with anyio.CancelScope(shield=True):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:  # pragma: no cover - not our group any more
                self.process.kill()
            await self.process.wait()
            await self.process.aclose()
            self._close_pipes()
            # SIGKILL is delivered asynchronously: return only once no member
            # of the group is left in any state but zombie (orphaned zombies
            # are never reaped here, so killpg(pgid, 0) is no test of death).
            deadline = time.monotonic() + 10
            while await anyio.to_thread.run_sync(_group_alive, self.process.pid):
                if time.monotonic() > deadline:  # pragma: no cover - a stuck kernel
                    log.warning("worker group %d still alive 10 s after SIGKILL", self.pid)
                    break
                await anyio.sleep(0.005)

    async def close(self) -> None:
        """Ask the worker to exit (stdin EOF); kill it if it does not."""
        with anyio.CancelScope(shield=True):
            try:
                if self.writer >= 0:
                    anyio.notify_closing(self.writer)
                    os.close(self.writer)
                    self.writer = -1
                with anyio.move_on_after(2):
                    await self.process.wait()
            finally:
                if self.process.returncode is None:
                    await self.kill()
                else:
                    await self.process.aclose()
                    self._close_pipes()


class _Waiter:
    """A task waiting for a worker: the pool hands it one, or wakes it to look again."""

    __slots__ = ("event", "since", "worker")

    def __init__(self, since: float) -> None:
        self.since = since
        self.event = anyio.Event()
        self.worker: _Worker | None = None


#: A worker idle this long is retired (the pool keeps one warm).
IDLE_RETIRE_SECONDS: Final = 60.0
#: A ready task waits this long for a busy worker before the pool grows.
GROW_AFTER_SECONDS: Final = 0.02
_CPUS: Final = os.cpu_count() or 1


class WorkerPool:
    """A pool of warm python worker processes.

    By default it grows on demand, up to the tasks in flight (which the
    client's ``max_concurrent`` bounds), so I/O-bound scripts are not limited
    by the CPU count; workers idle for :data:`IDLE_RETIRE_SECONDS` are retired
    (one is kept warm). Each idle worker costs about 15 MB of memory.

    Growth is lazy: a task takes an idle worker if there is one; otherwise it
    waits for a busy one, in order of arrival, and only once it has waited
    :data:`GROW_AFTER_SECONDS` (or no worker exists) does the pool start
    another. Short CPU-bound tasks thus share as many workers as keep up
    with them (on 2 cores, about 2) instead of paying a process start each,
    while tasks that block (sleep, I/O, waiting for each other) still all run
    at once within a few tens of milliseconds: starts run in parallel, at most
    as many at a time as there are workers, so the pool doubles per round.

    Each worker runs one task at a time and gets the next only when it has
    answered: a slow task never holds up another one queued behind it, a
    timeout or cancellation kills exactly the worker of the task concerned,
    and a crash fails only the task that was running. Tasks are deliberately
    not sent to a worker in batches: a task queued in a busy worker behind a
    slow one would wait for it (or, with every task timed, need a protocol to
    take it back unstarted), and with short tasks the engine's own work per
    task (its coroutine and timeout scope), not the pipe, is most of the cost.

    Args:
        size: Most workers alive at once (default None: no cap of its own).
    """

    def __init__(self, size: int | None = None) -> None:
        self.size = size
        self._idle: list[_Worker] = []  # in order of last use
        self._idle_since: dict[_Worker, float] = {}
        self._waiters: deque[_Waiter] = deque()
        self._all: set[_Worker] = set()
        #: Workers started, not yet ready; and starts under way (_spawn calls).
        self._starting: set[_Worker] = set()
        self._launching = 0
        #: When a worker last started a task (it is busy with it, or done).
        self._last_start = 0.0
        self._seq = 0
        self._closed = False

    def __repr__(self) -> str:
        cap = "on demand" if self.size is None else self.size
        return f"<WorkerPool size={cap} alive={len(self._all)} idle={len(self._idle)}>"

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return sorted(w.pid for w in self._all)

    def _closed_error(self) -> ProviderError:
        return ProviderError(
            "The python worker pool is closed; use the client inside 'async with'.",
            ErrorCode.SYSTEM_SHUTDOWN,
            {"provider_id": "python"},
        )

    async def _spawn(self) -> _Worker:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        to_child, writer = os.pipe()
        reader, from_child = os.pipe()
        try:
            process = await anyio.open_process(
                [sys.executable, "-u", "-m", "gleitzeit._providers._worker"],
                stdin=to_child,
                stdout=from_child,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            for fd in (writer, reader):
                os.close(fd)
            raise ProviderError(
                f"Cannot start a python worker process ({exc}); check that {sys.executable} runs.",
                ErrorCode.PROVIDER_INITIALIZATION_FAILED,
                {"provider_id": "python"},
            ) from exc
        finally:
            os.close(to_child)
            os.close(from_child)
        os.set_blocking(writer, False)
        os.set_blocking(reader, False)
        worker = _Worker(process, writer, reader)
        worker.cwd = os.getcwd()  # inherited
        self._all.add(worker)
        self._starting.add(worker)
        try:
            hello = await worker.receive()
        except (anyio.EndOfStream, ValueError, EOFError) as exc:
            await self._discard(worker)
            raise ProviderError(
                "A python worker process exited during start-up; run "
                f"'{sys.executable} -m gleitzeit._providers._worker' to see why.",
                ErrorCode.PROVIDER_INITIALIZATION_FAILED,
                {"provider_id": "python"},
            ) from exc
        except BaseException:
            await self._discard(worker)
            raise
        finally:
            self._starting.discard(worker)
        assert hello == (0, {"ready": True}), hello
        log.debug("started python worker pid %d", process.pid)
        return worker

    async def _discard(self, worker: _Worker) -> None:
        self._all.discard(worker)
        self._idle_since.pop(worker, None)
        await worker.kill()
        if self._waiters:  # the pool may grow again: the first in line looks
            self._waiters[0].event.set()

    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run one request on a worker; cancellation kills that worker.

        ``request`` holds ``code`` or ``file``, ``args`` and ``cwd``.
        """
        if self._closed:
            raise self._closed_error()
        self._seq += 1
        seq = self._seq
        cwd = request.get("cwd")
        worker = await self._acquire()
        try:
            frame = encode(
                [
                    (
                        seq,
                        request.get("code"),
                        request.get("file"),
                        request["args"],
                        None if cwd == worker.cwd else cwd,
                    )
                ]
            )
        except ValueError as exc:
            self._release(worker)
            raise TaskError(
                f"The task's args cannot be sent to a worker process ({exc}); "
                "use JSON-like values (dicts, lists, strings, numbers, booleans, None).",
                ErrorCode.TASK_VALIDATION_FAILED,
            ) from exc
        worker.cwd = cwd
        try:
            self._last_start = time.monotonic()
            await worker.send(frame)
            done, response = await worker.receive()
            assert done == seq, (done, seq)
        except (anyio.EndOfStream, OSError):
            code = worker.process.returncode
            await self._discard(worker)
            if code is None:
                code = worker.process.returncode
            return {
                "success": False,
                "error_type": "WorkerExited",
                "message": f"the worker process exited with code {code} while running "
                "the code (os._exit, a crash or a signal)",
                "exit_code": code,
                "traceback": "",
                "stdout": "",
                "stderr": "",
            }
        except BaseException:
            # Cancelled (a timeout or cancel_workflow) mid-request: the worker's
            # state is unknown, so it goes.
            log.debug("killing python worker pid %d", worker.pid)
            await self._discard(worker)
            raise
        self._release(worker)
        if len(self._idle) > 1:
            await self._retire_idle(time.monotonic())
        return response  # type: ignore[no-any-return]

    async def _acquire(self) -> _Worker:
        """An idle worker, else one handed over in order of arrival (growing the pool)."""
        if self._idle:
            worker = self._idle.pop()  # the most recently used: warmest
            del self._idle_since[worker]
            return worker
        waiter = _Waiter(time.monotonic())
        self._waiters.append(waiter)
        try:
            while waiter.worker is None:
                if self._closed:
                    raise self._closed_error()
                patience = self._patience(waiter)
                if patience <= 0:
                    await self._grow()
                    continue
                if waiter.event.is_set():  # woken to look again
                    waiter.event = anyio.Event()
                if patience == math.inf:
                    await waiter.event.wait()
                    continue
                with anyio.move_on_after(patience):
                    await waiter.event.wait()
        except BaseException:
            if waiter.worker is None:
                self._waiters.remove(waiter)
            else:
                self._release(waiter.worker)
            raise
        return waiter.worker

    def _patience(self, waiter: _Waiter) -> float:
        """Seconds ``waiter`` waits before the pool grows for it (<= 0: grow now).

        Up to the CPU count, a task waits at most GROW_AFTER_SECONDS for a
        busy worker. Beyond it, only while no worker has started a task for
        that long (every worker is stuck on a slow one): while tasks flow,
        more processes than cores would only slow them down.
        """
        ready = len(self._all) - len(self._starting)
        total = ready + self._launching
        if self.size is not None and total >= self.size:
            return math.inf  # a worker that goes hands the turn on (_discard)
        if total == 0:
            return 0.0
        if self._launching >= max(1, ready):
            return GROW_AFTER_SECONDS
        since = waiter.since if total < _CPUS else max(waiter.since, self._last_start)
        return since + GROW_AFTER_SECONDS - time.monotonic()

    async def _grow(self) -> None:
        """Start a worker and hand it to the first in line."""
        self._launching += 1
        try:
            worker = await self._spawn()
        finally:
            self._launching -= 1
        self._release(worker)

    def _release(self, worker: _Worker) -> None:
        """Hand a free worker to the first task in line, or make it idle."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.worker = worker
            waiter.event.set()
            return
        self._idle.append(worker)
        self._idle_since[worker] = time.monotonic()

    async def _retire_idle(self, now: float) -> None:
        """Stop workers idle for longer than IDLE_RETIRE_SECONDS, keeping one."""
        while len(self._idle) > 1:
            oldest = self._idle[0]  # the list is in order of last use
            if now - self._idle_since.get(oldest, now) < IDLE_RETIRE_SECONDS:
                break
            self._idle.pop(0)
            self._idle_since.pop(oldest, None)
            log.debug("retiring idle python worker pid %d", oldest.pid)
            await self._discard(oldest)

    async def aclose(self) -> None:
        """Stop every worker; waits for them to exit."""
        self._closed = True
        for waiter in self._waiters:
            waiter.event.set()
        workers, self._idle = list(self._all), []
        self._all.clear()
        self._idle_since.clear()
        async with anyio.create_task_group() as tg:
            for worker in workers:
                tg.start_soon(worker.close)


class PythonProvider(BaseProvider):
    """Runs ``python/execute`` calls.

    Args:
        workers: Most worker processes at once (default None: as many as tasks
            in flight; idle ones are retired after a minute).
    """

    provider_id = "python"
    specs = PYTHON_SPECS

    def __init__(self, workers: int | None = None) -> None:
        self.pool = WorkerPool(workers)
        self._programs: dict[str, CodeType] = {}

    def __repr__(self) -> str:
        return f"<PythonProvider {self.pool!r}>"

    async def aclose(self) -> None:
        """Stop the worker processes."""
        await self.pool.aclose()

    async def health(self) -> dict[str, Any]:
        """Always reachable; the pool's size and live workers."""
        return {
            "provider_id": self.provider_id,
            "reachable": True,
            "workers": self.pool.size if self.pool.size is not None else "on demand",
            "alive": len(self.pool.pids),
        }

    def runs_inline(self, call: Call) -> bool:
        """Inline isolation runs on the event loop."""
        return call.isolation == "inline"

    def _request(self, call: Call) -> dict[str, Any]:
        params = call.params
        args = params.get("args", params.get("context")) or {}
        if not isinstance(args, dict):
            raise TaskError(
                f"Task {call.task_id!r}: 'args' must be a mapping, not {type(args).__name__}.",
                ErrorCode.TASK_VALIDATION_FAILED,
                {"task_id": call.task_id},
            )
        file = params.get("file")
        if file is not None:
            path = resolve_path(str(file), call.source_dir)
            if not path.is_file():
                looked = _looked_in(str(file), call.source_dir)
                raise TaskError(
                    f"Task {call.task_id!r}: python file {file!r} not found (looked in "
                    f"{' and '.join(looked)}); fix the 'file' path.",
                    ErrorCode.TASK_VALIDATION_FAILED,
                    {"task_id": call.task_id, "file": str(file)},
                )
            return {"file": str(path), "args": args}
        return {"code": params.get("code") or "", "args": args}

    def run_inline(self, call: Call) -> dict[str, Any]:
        """Run the code in this process."""
        request = self._request(call)
        return self._result(
            call, run_code(request.get("code"), request.get("file"), request["args"])
        )

    def inline_program(self, params: Mapping[str, Any]) -> tuple[CodeType, dict[str, Any]] | None:
        """The compiled code and args of an inline call with these (substituted) params.

        For :meth:`run_programs`. None when the call must go through
        :meth:`run_inline` instead: a script ``file``, ``args`` that are not a
        dict, or code that does not compile (``run_inline`` reports those).
        """
        code = params.get("code")
        if type(code) is not str or params.get("file") is not None:
            return None
        args = params.get("args", params.get("context")) or {}
        if type(args) is not dict:
            return None
        program = self._programs.get(code)
        if program is None:
            try:
                program = compile(code, "<code>", "exec")
            except Exception:  # a SyntaxError, say: run_inline reports it
                return None
            if len(self._programs) >= _PROGRAMS_MAX:
                self._programs.clear()
            self._programs[code] = program
        return program, args

    def run_programs(
        self,
        programs: Sequence[CodeType],
        argses: Sequence[dict[str, Any]],
        task_ids: Sequence[str],
        starts: list[float] | None = None,
    ) -> list[dict[str, Any] | Exception]:
        """Run inline programs one after another, each exactly as :meth:`run_inline` would.

        The batch shares the output capture (emptied between programs) and one
        clock reading per program: ``execution_time`` runs from the end of the
        previous program's code to the end of this one's.

        Args:
            programs: Code from :meth:`inline_program`.
            argses: Each program's args (copied, never changed).
            task_ids: Each program's task, for error messages.
            starts: When given, receives each program's wall-clock start time.

        Returns:
            Per program, its result dict, or the error to fail its task with
            (a :class:`TaskError`, or the unexpected exception from reading its
            result or output).
        """
        outcomes: list[dict[str, Any] | Exception] = []
        append = outcomes.append
        clock = time.perf_counter
        wall = time.time
        saved = sys.stdout, sys.stderr, sys.stdin, sys.argv
        argv = saved[3]
        out, err, inp = io.StringIO(), io.StringIO(), io.StringIO()
        sys.stdout, sys.stderr, sys.stdin = out, err, inp
        try:
            before = clock()
            for program, args, task_id in zip(programs, argses, task_ids, strict=True):
                if args:
                    args = dict(args)
                    namespace = {"__name__": "__main__", "__builtins__": builtins}
                    namespace.update(
                        {k: v for k, v in args.items() if type(k) is str and k.isidentifier()}
                    )
                    namespace["args"] = args
                    namespace.setdefault("context", args)
                    namespace["result"] = None
                else:
                    args = {}
                    namespace = {
                        "__name__": "__main__",
                        "__builtins__": builtins,
                        "args": args,
                        "context": args,
                        "result": None,
                    }
                if starts is not None:
                    starts.append(wall())
                failure: dict[str, Any] | None = None
                try:
                    exec(program, namespace)
                except SystemExit as exc:
                    failure = _exit_failure(exc)
                # User code: a KeyboardInterrupt it raises fails the task.
                except BaseException as exc:
                    failure = {
                        "error_type": type(exc).__name__,
                        "message": str(exc),
                        "traceback": _inline_traceback(exc),
                    }
                now = clock()
                elapsed = now - before
                before = now
                if (
                    sys.stdout is not out
                    or sys.stderr is not err
                    or sys.stdin is not inp
                    or sys.argv is not argv
                    or inp.tell()
                    or inp.getvalue()
                ):  # the code replaced or used a stream: the next program gets fresh ones
                    stdout, stderr = out, err
                    out, err, inp = io.StringIO(), io.StringIO(), io.StringIO()
                    sys.stdout, sys.stderr, sys.stdin, sys.argv = out, err, inp, argv
                else:
                    stdout, stderr = out, err
                try:
                    if failure is not None:
                        failure.update(
                            success=False,
                            stdout=_drain(stdout),
                            stderr=_drain(stderr),
                            execution_time=elapsed,
                        )
                        append(_failed(task_id, failure))
                        continue
                    result = namespace["result"]
                    if type(result) not in _PLAIN:
                        try:
                            result = jsonable(result)
                        except RecursionError:
                            result = repr(result)
                    printed = stdout.getvalue()
                    if printed:  # (a function call less per task than _drain)
                        stdout.seek(0)
                        stdout.truncate()
                    warned = stderr.getvalue()
                    if warned:
                        stderr.seek(0)
                        stderr.truncate()
                    append(
                        {
                            "result": result,
                            "stdout": printed,
                            "stderr": warned,
                            "success": True,
                            "execution_time": elapsed,
                        }
                    )
                except Exception as exc:  # a closed output stream, a failing repr()
                    append(exc)
                    out, err, inp = io.StringIO(), io.StringIO(), io.StringIO()
                    sys.stdout, sys.stderr, sys.stdin = out, err, inp
        finally:
            sys.stdout, sys.stderr, sys.stdin, sys.argv = saved
        return outcomes

    async def execute(self, call: Call) -> dict[str, Any]:
        """Run the code in a worker process."""
        if call.params.get("file") is not None:  # a script file: checked off the loop
            request = await anyio.to_thread.run_sync(self._request, call)
        else:
            request = self._request(call)
        request["cwd"] = os.getcwd()
        return self._result(call, await self.pool.run(request))

    @staticmethod
    def _result(call: Call, response: dict[str, Any]) -> dict[str, Any]:
        if response.get("success") is True:
            return response  # already the task's result dict
        raise _failed(call.task_id, response)


def _failed(task_id: str, response: dict[str, Any]) -> TaskError:
    """The error of a failed run (``response`` as :func:`run_code` returns it)."""
    kind = response.get("error_type", "Error")
    message = response.get("message", "")
    return TaskError(
        f"Task {task_id!r} failed: {kind}: {message}".rstrip(": "),
        ErrorCode.TASK_EXECUTION_FAILED,
        {
            "task_id": task_id,
            "error_type": kind,
            "traceback": response.get("traceback", ""),
            "stdout": response.get("stdout", ""),
            "stderr": response.get("stderr", ""),
            "exit_code": response.get("exit_code"),
        },
    )


def _exit_failure(exc: SystemExit) -> dict[str, Any] | None:
    """None for ``sys.exit()``/``sys.exit(0)`` (a normal end), else the failure."""
    status = exc.code
    if status is None or status == 0:
        return None
    return {
        "error_type": "SystemExit",
        "message": f"the code exited with status {status!r}",
        "exit_code": status if isinstance(status, int) else 1,
        "traceback": "",
    }


def _inline_traceback(exc: BaseException) -> str:
    """The traceback without this module's own frames (as the worker reports it)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _drain(stream: io.StringIO) -> str:
    """What was written to ``stream``, which is emptied for the next program."""
    text = stream.getvalue()
    if text:
        stream.seek(0)
        stream.truncate()
    return text
