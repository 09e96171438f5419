"""python/execute: run trusted Python code in warm worker processes or inline.

Default isolation is ``"process"``: a pool of warm worker processes, each in
its own session so a timeout kills the worker *and* anything it started; a
killed worker is replaced on demand. ``"inline"`` runs the code in the
engine's own process (fast, for trusted code; a timeout cannot interrupt a
busy loop there). This is not a sandbox: the code can do anything the
calling user can.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread
from anyio.streams.buffered import BufferedByteReceiveStream

from ..core._methods import MethodSpec
from ..core.errors import ErrorCode, ProviderError, TaskError
from . import BaseProvider
from ._runner import run_code

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

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
    ),
)

_MAX_LINE: Final = 1 << 30  # a response line may be up to 1 GiB
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
    """One worker process and its protocol streams."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        assert process.stdin is not None
        self.reader = BufferedByteReceiveStream(process.stdout)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def request(self, payload: bytes) -> dict[str, Any]:
        assert self.process.stdin is not None
        await self.process.stdin.send(payload)
        line = await self.reader.receive_until(b"\n", _MAX_LINE)
        return json.loads(line)  # type: ignore[no-any-return]

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
                assert self.process.stdin is not None
                await self.process.stdin.aclose()
                with anyio.move_on_after(2):
                    await self.process.wait()
            finally:
                if self.process.returncode is None:
                    await self.kill()
                else:
                    await self.process.aclose()


#: A worker idle this long is retired (the pool keeps one warm).
IDLE_RETIRE_SECONDS: Final = 60.0


class WorkerPool:
    """A pool of warm python worker processes.

    By default it grows on demand, up to the tasks in flight (which the
    client's ``max_concurrent`` bounds), so I/O-bound scripts are not limited
    by the CPU count; workers idle for :data:`IDLE_RETIRE_SECONDS` are retired
    (one is kept warm). Each idle worker costs about 15 MB of memory.

    Args:
        size: Most workers alive at once (default None: no cap of its own).
    """

    def __init__(self, size: int | None = None) -> None:
        self.size = size
        self._idle: list[_Worker] = []
        self._idle_since: dict[_Worker, float] = {}
        # anyio primitives bind to the event loop that exists when they are made,
        # and a pool may be built in one thread and used in another: make it lazily.
        self._slots: anyio.Semaphore | None = None
        self._all: set[_Worker] = set()
        self._closed = False

    def __repr__(self) -> str:
        cap = "on demand" if self.size is None else self.size
        return f"<WorkerPool size={cap} alive={len(self._all)} idle={len(self._idle)}>"

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return sorted(w.pid for w in self._all)

    async def _spawn(self) -> _Worker:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        try:
            process = await anyio.open_process(
                [sys.executable, "-u", "-m", "gleitzeit._providers._worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            raise ProviderError(
                f"Cannot start a python worker process ({exc}); check that {sys.executable} runs.",
                ErrorCode.PROVIDER_INITIALIZATION_FAILED,
                {"provider_id": "python"},
            ) from exc
        worker = _Worker(process)
        self._all.add(worker)
        try:
            hello = await worker.reader.receive_until(b"\n", 1024)
        except (anyio.EndOfStream, anyio.IncompleteRead) as exc:
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
        assert hello.startswith(b'{"ready"')
        log.debug("started python worker pid %d", process.pid)
        return worker

    async def _discard(self, worker: _Worker) -> None:
        self._all.discard(worker)
        self._idle_since.pop(worker, None)
        await worker.kill()

    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run one request on an idle worker; cancellation kills that worker."""
        if self._closed:
            raise ProviderError(
                "The python worker pool is closed; use the client inside 'async with'.",
                ErrorCode.SYSTEM_SHUTDOWN,
                {"provider_id": "python"},
            )
        payload = json.dumps(request).encode() + b"\n"
        if self.size is None:
            return await self._run(payload)
        if self._slots is None:
            self._slots = anyio.Semaphore(self.size)
        async with self._slots:
            return await self._run(payload)

    async def _run(self, payload: bytes) -> dict[str, Any]:
        if self._idle:
            worker = self._idle.pop()  # the most recently used: warmest
            self._idle_since.pop(worker, None)
        else:
            worker = await self._spawn()
        try:
            response = await worker.request(payload)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
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
        now = time.monotonic()
        self._idle.append(worker)
        self._idle_since[worker] = now
        await self._retire_idle(now)
        return response

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
        workers, self._idle = list(self._all), []
        self._all.clear()
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
        kind = response.get("error_type", "Error")
        message = response.get("message", "")
        raise TaskError(
            f"Task {call.task_id!r} failed: {kind}: {message}".rstrip(": "),
            ErrorCode.TASK_EXECUTION_FAILED,
            {
                "task_id": call.task_id,
                "error_type": kind,
                "traceback": response.get("traceback", ""),
                "stdout": response.get("stdout", ""),
                "stderr": response.get("stderr", ""),
                "exit_code": response.get("exit_code"),
            },
        )
