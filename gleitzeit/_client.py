"""GleitzeitClient: the async API. Its blocking twin is generated from it (``_sync.py``)."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._config import (
    DEFAULT_OLLAMA_URL,
    DEFAULT_PERSISTENCE,
    ISOLATION_MODES,
    PERSISTENCE_BACKENDS,
    check_choice,
    default_db_path,
    resolve_option,
    setup_logging,
    unavailable_backends,
)
from ._engine import Engine, Run, stored_snapshot
from ._export import export_run
from ._loader import WorkflowSource, load_workflow
from ._providers import Call, ProviderRegistry
from ._providers.batch import BatchProvider
from ._providers.builtin import BuiltinToolsProvider
from ._providers.mcp import McpProvider
from ._providers.ollama import DEFAULT_CHAT_MODEL, DEFAULT_VISION_MODEL, OllamaProvider
from ._providers.python import PythonProvider
from .core._events import Event, EventKind
from .core._models import Workflow, WorkflowStatus
from .core.errors import (
    ConfigurationError,
    ErrorCode,
    GleitzeitError,
    TaskError,
    WorkflowError,
    error_from_dict,
    error_to_dict,
    leaf_exceptions,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
    from types import TracebackType

    from ._batch_result import BatchResult
    from ._providers import Provider
    from ._stores import Store, StoredRun

__all__ = ["GleitzeitClient"]


log = logging.getLogger("gleitzeit.client")


class GleitzeitClient:
    """Runs workflows in this process. Use it as ``async with GleitzeitClient() as c:``.

    Works under ``asyncio.run`` and ``trio.run``. Every task, worker process and
    connection it starts ends with its ``async with`` block; workflows started
    with :meth:`run_workflow_async` and not awaited are cancelled then.

    Args:
        persistence: ``"sqlite"`` (default), ``"journal"``, ``"memory"`` or
            ``"redis"``; ``$GLEITZEIT_PERSISTENCE_BACKEND`` overrides the default.
        db_path: The sqlite or journal file (default ``~/.gleitzeit/gleitzeit.db``;
            ``$GLEITZEIT_SQLITE_PATH``).
        redis_url: Redis URL for ``persistence="redis"`` (``$GLEITZEIT_REDIS_URL``;
            default ``redis://localhost:6379/0``). Needs ``gleitzeit[redis]``.
        ollama_url: Ollama's base URL (``$GLEITZEIT_OLLAMA_URL``).
        debug: Log task starts, finishes and substitutions at DEBUG level
            (``$GLEITZEIT_LOG_LEVEL`` sets a level without it).
        max_concurrent: Most tasks in flight per workflow run (a workflow's
            ``max_parallel_tasks`` overrides it).
        isolation: Where ``python/execute`` code runs: ``"process"`` (warm worker
            processes, killable on timeout) or ``"inline"`` (this process: fast,
            for trusted code; a timeout cannot interrupt a busy loop there).
        workers: Most python worker processes at once (default None: as many as
            tasks in flight, so I/O-bound scripts are not held to the CPU count;
            idle workers are retired after a minute, one kept warm; about
            15 MB each).
        ollama_max_in_flight: Most requests in flight to the Ollama host at
            once; more wait here rather than in Ollama's queue (default None:
            16, widened for a batch whose ``max_concurrent`` is larger; a
            value set here also bounds batches).
        on_event: Called (in the event loop; keep it quick) with each batch
            of state-change :class:`Event` records — workflow submitted,
            started, finished; task started, completed, failed, skipped,
            cancelled — e.g. to show progress. Its exceptions are logged.
        mcp_servers: MCP servers whose tools tasks call as
            ``mcp/<server>/<tool>``: name → ``{"command": [...], "env": {...},
            "cwd": ...}`` (stdio) or ``{"url": ...}`` (streamable HTTP), each
            optionally with ``max_concurrent`` (default 8). A server starts on
            first use and stops with the client. Needs ``gleitzeit[mcp]``.
        providers: Extra providers (see :mod:`gleitzeit.providers`), registered
            after the built-in ones; their methods may not clash with others'.
        max_finished_runs: Most finished runs kept in memory (oldest dropped
            first), so a long-lived client stays bounded. Durable stores still
            answer for older runs; on the memory store they are forgotten.
        redis_prefix: Every Redis key starts with ``redis_prefix:``
            (``$GLEITZEIT_REDIS_PREFIX``); clients with different prefixes on
            one Redis do not see each other's workflows.
        redis_heartbeat_ttl: Seconds (default 5; ``$GLEITZEIT_REDIS_HEARTBEAT_TTL``)
            after which the tasks of a process sharing runs on Redis that
            stopped beating (died) are put back for the others; refreshed four
            times per TTL from a thread of its own.

    Raises:
        ConfigurationError: CONFIGURATION_ERROR for an unknown persistence name,
            isolation mode or log level, a malformed ``mcp_servers`` entry, or a
            provider whose id or methods are taken.
    """

    def __init__(
        self,
        persistence: str = DEFAULT_PERSISTENCE,
        db_path: str | os.PathLike[str] | None = None,
        redis_url: str | None = None,
        ollama_url: str = DEFAULT_OLLAMA_URL,
        debug: bool = False,
        *,
        max_concurrent: int = 16,
        isolation: Literal["process", "inline"] = "process",
        workers: int | None = None,
        ollama_max_in_flight: int | None = None,
        on_event: Callable[[Sequence[Event]], None] | None = None,
        mcp_servers: Mapping[str, Mapping[str, Any]] | None = None,
        providers: Iterable[Provider] = (),
        max_finished_runs: int = 1000,
        redis_prefix: str | None = None,
        redis_heartbeat_ttl: float | None = None,
    ) -> None:
        setup_logging(debug)
        backend = resolve_option(persistence, "GLEITZEIT_PERSISTENCE_BACKEND") or "sqlite"
        self.persistence = check_choice(
            "persistence",
            backend,
            PERSISTENCE_BACKENDS,
            "GLEITZEIT_PERSISTENCE_BACKEND",
            unavailable_backends(),
        )
        path = resolve_option(
            None if db_path is None else os.fspath(db_path), "GLEITZEIT_SQLITE_PATH"
        )
        self.db_path = path
        self.redis_url = resolve_option(redis_url, "GLEITZEIT_REDIS_URL")
        self.redis_prefix = resolve_option(redis_prefix, "GLEITZEIT_REDIS_PREFIX") or "gleitzeit"
        ttl = resolve_option(
            None if redis_heartbeat_ttl is None else str(redis_heartbeat_ttl),
            "GLEITZEIT_REDIS_HEARTBEAT_TTL",
        )
        try:
            self.redis_heartbeat_ttl = 5.0 if ttl is None else float(ttl)
        except ValueError:
            self.redis_heartbeat_ttl = 0.0
        if not 0.5 <= self.redis_heartbeat_ttl <= 3600:
            raise ConfigurationError(
                f"redis_heartbeat_ttl must be a number of seconds from 0.5 to 3600, not {ttl!r} "
                "(a few seconds: a dead process's tasks go to others after about that long).",
                data={"option": "redis_heartbeat_ttl", "value": ttl},
            )
        self.ollama_url = resolve_option(ollama_url, "GLEITZEIT_OLLAMA_URL") or str(ollama_url)
        self.debug = debug
        self.isolation = check_choice("isolation", isolation, ISOLATION_MODES)
        if max_finished_runs < 1:
            raise ConfigurationError(
                f"max_finished_runs must be at least 1, not {max_finished_runs}.",
                data={"option": "max_finished_runs", "value": max_finished_runs},
            )
        self.max_finished_runs = max_finished_runs
        if max_concurrent < 1:
            raise ConfigurationError(
                f"max_concurrent must be at least 1, not {max_concurrent}.",
                data={"option": "max_concurrent", "value": max_concurrent},
            )
        self.max_concurrent = max_concurrent
        if workers is not None and workers < 1:
            raise ConfigurationError(
                f"workers must be at least 1, not {workers}; leave it None to grow the "
                "pool with the tasks in flight.",
                data={"option": "workers", "value": workers},
            )
        if ollama_max_in_flight is not None and ollama_max_in_flight < 1:
            raise ConfigurationError(
                f"ollama_max_in_flight must be at least 1, not {ollama_max_in_flight}; leave "
                "it None for the default.",
                data={"option": "ollama_max_in_flight", "value": ollama_max_in_flight},
            )
        self._python = PythonProvider(workers)
        self._ollama = OllamaProvider(self.ollama_url, max_in_flight=ollama_max_in_flight)
        self._store = self._make_store()
        #: Every provider of this client, and the methods they serve.
        self.providers = ProviderRegistry(
            [
                self._python,
                self._ollama,
                BuiltinToolsProvider(),
                McpProvider(mcp_servers),
                BatchProvider(),
            ]
        )
        for provider in providers:
            self.providers.register(provider)
        self._engine = Engine(
            self.providers,
            self._store,
            max_concurrent=max_concurrent,
            isolation=self.isolation,
            listeners=[on_event] if on_event is not None else [],
        )
        self._state: Literal["new", "open", "closed"] = "new"
        self._tg: anyio.abc.TaskGroup | None = None
        self._runs: dict[str, Run] = {}
        self._finished: OrderedDict[str, Run] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"<GleitzeitClient persistence={self.persistence!r} state={self._state} "
            f"isolation={self.isolation!r} running={len(self._runs)}>"
        )

    def _make_store(self) -> Store:
        """The store named by ``persistence``; nothing touches the disk before ``open``."""
        if self.persistence == "memory":
            from ._stores.memory import MemoryStore

            return MemoryStore(max_finished=self.max_finished_runs)
        if self.persistence == "redis":
            from ._stores.redis import DEFAULT_REDIS_URL, RedisStore

            return RedisStore(
                self.redis_url or DEFAULT_REDIS_URL,
                prefix=self.redis_prefix,
                heartbeat_ttl=self.redis_heartbeat_ttl,
                max_finished=self.max_finished_runs,
            )
        path = Path(self.db_path) if self.db_path else default_db_path()
        if self.persistence == "sqlite":
            try:
                from ._stores.sqlite import SqliteStore
            except ImportError:  # a Python built without sqlite3
                journal = path.with_suffix(".jsonl")
                log.warning("the sqlite3 module is not available; using the journal %s", journal)
            else:
                return SqliteStore(path)
        else:
            journal = path if self.db_path else path.with_suffix(".jsonl")
        from ._stores.journal import JournalStore

        return JournalStore(journal)

    # --- lifecycle ------------------------------------------------------------

    async def __aenter__(self) -> GleitzeitClient:
        if self._state != "new":
            raise GleitzeitError(
                "A GleitzeitClient can be entered once; create a new client for a new "
                "'async with' block.",
                ErrorCode.SYSTEM_SHUTDOWN,
            )
        self._state = "open"
        await self._store.open()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self.providers.open(self._tg)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._state = "closed"
        assert self._tg is not None
        try:
            self._tg.cancel_scope.cancel()  # unawaited background runs end here
            # The body's own exception is never handed to the task group: it
            # leaves this block as itself (a WorkflowError stays a
            # WorkflowError), not wrapped in an exception group.
            try:
                await self._tg.__aexit__(None, None, None)
            except BaseExceptionGroup as group:
                failure = _background_failure(group)
                if exc is None:
                    raise failure from group
                log.error("background work failed while leaving the client: %s", failure)
            return None
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.providers.aclose()
                finally:
                    await self._store.aclose()

    def _check_open(self) -> None:
        if self._state != "open":
            raise GleitzeitError(
                "The client is not open; use it inside 'async with GleitzeitClient() as "
                "client:'"
                + (" (this one was already closed)." if self._state == "closed" else "."),
                ErrorCode.SYSTEM_NOT_INITIALIZED
                if self._state == "new"
                else ErrorCode.SYSTEM_SHUTDOWN,
            )

    # --- internals ------------------------------------------------------------

    async def _submit(self, workflow: WorkflowSource) -> Run:
        self._check_open()
        wf = await self._load(workflow)
        if wf.is_batch:  # one task per file, found now (off the event loop)
            from ._batch import expand_batch  # batch code loads on first use

            wf = await expand_batch(wf, self)
        if wf.id in self._runs:
            raise WorkflowError(
                f"Workflow {wf.id!r} is already running; wait for it or give the new run "
                "another id.",
                ErrorCode.WORKFLOW_INVALID_STATE,
                {"workflow_id": wf.id},
            )
        run = self._engine.prepare(wf)
        await self._engine.emit(
            [
                Event(
                    kind=EventKind.WORKFLOW_SUBMITTED,
                    workflow_id=wf.id,
                    at=run.created_at,
                    workflow=wf,
                )
            ]
        )
        self._runs[wf.id] = run
        return run

    async def _execute(self, run: Run, *, owned: bool = False) -> None:
        lock = None if owned else self._store.run_lock(run.id)
        try:
            if lock is not None:  # one process at a time runs a workflow
                await anyio.to_thread.run_sync(lock.acquire)
            await self._engine.execute(run)
        finally:
            if lock is not None:
                lock.release()
            self._runs.pop(run.id, None)
            self._finished[run.id] = run
            # Bounded on every store; durable stores still answer for older runs.
            while len(self._finished) > self.max_finished_runs:
                self._finished.popitem(last=False)

    async def _load(self, workflow: WorkflowSource) -> Workflow:
        """Validate a workflow against this client's providers (they may check more)."""
        # Reading and parsing a document (a big YAML file takes seconds) and
        # checking literal file paths are blocking work: a worker thread does it.
        wf = await anyio.to_thread.run_sync(
            functools.partial(load_workflow, workflow, methods=self.providers.methods)
        )
        if self._state == "open":  # (create_workflow also works on a client not yet open)
            await self.providers.prepare(wf)
        return wf

    def _live(self, workflow_id: str) -> Run | None:
        return self._runs.get(workflow_id) or self._finished.get(workflow_id)

    async def _stored(self, workflow_id: str) -> StoredRun:
        stored = await self._store.load(workflow_id)
        if stored is None:
            raise WorkflowError(
                f"No workflow with id {workflow_id!r} in the {self.persistence} store; "
                "list_workflows() shows the known ones.",
                ErrorCode.WORKFLOW_NOT_FOUND,
                {"workflow_id": workflow_id},
            )
        return stored

    # --- workflows -------------------------------------------------------------

    async def run_workflow(self, workflow: WorkflowSource) -> dict[str, Any]:
        """Run a workflow to its end and return every task's result.

        Args:
            workflow: A path to a YAML/JSON file, a dict, or a Workflow.

        Returns:
            Task id → result dict, in document order.

        Raises:
            WorkflowError: WORKFLOW_VALIDATION_FAILED / WORKFLOW_CIRCULAR_DEPENDENCY
                before anything runs; WORKFLOW_TIMEOUT, WORKFLOW_CANCELLED.
            TaskError: the first failed task's error (TASK_EXECUTION_FAILED,
                TASK_TIMEOUT, TASK_PARAMETER_ERROR, ...), with ``task_id``,
                ``workflow_id`` and the completed ``results`` in ``e.data``.
            ProviderError: as TaskError, when a provider failed the task.
        """
        run = await self._submit(workflow)
        await self._execute(run)
        return run.raise_for_status()

    async def create_workflow(
        self, name: str, tasks: list[dict[str, Any]], description: str | None = None
    ) -> Workflow:
        """Build and validate a workflow without running it.

        Raises:
            WorkflowError: WORKFLOW_VALIDATION_FAILED or WORKFLOW_CIRCULAR_DEPENDENCY.
        """
        doc: dict[str, Any] = {"name": name, "tasks": tasks}
        if description is not None:
            doc["description"] = description
        return await self._load(doc)

    async def run_workflow_async(self, workflow: WorkflowSource) -> Workflow:
        """Start a workflow in the background and return at once.

        The run lives inside this client: follow it with
        :meth:`get_workflow_status`, collect it with :meth:`wait_for_workflow`.
        Leaving the client's ``async with`` cancels it if it is still running.

        Raises:
            WorkflowError: WORKFLOW_VALIDATION_FAILED / WORKFLOW_CIRCULAR_DEPENDENCY.
        """
        run = await self._submit(workflow)
        assert self._tg is not None
        self._tg.start_soon(self._execute, run, name=f"gleitzeit workflow {run.id}")
        return run.snapshot()

    async def submit_workflow(self, workflow: WorkflowSource) -> Workflow:
        """Validate a workflow and store it as ``pending`` without running it.

        :meth:`resume_workflow` runs it later, from this client or from another
        process sharing the store (``gleitzeit workflow submit`` then
        ``gleitzeit workflow resume ID``); :meth:`cancel_workflow` marks it
        ``cancelled`` before it ran. On the memory store it lives only as long
        as this client.

        Returns:
            The stored workflow, ``status`` pending; its ``id`` names it.

        Raises:
            WorkflowError: WORKFLOW_VALIDATION_FAILED / WORKFLOW_CIRCULAR_DEPENDENCY
                (nothing is stored); WORKFLOW_INVALID_STATE if a workflow with
                this id is running in this client.
        """
        run = await self._submit(workflow)
        del self._runs[run.id]  # stored, not running
        self._finished.pop(run.id, None)  # an earlier run of this id is replaced
        return run.snapshot()

    async def get_workflow_status(self, workflow_id: str) -> Workflow | None:
        """A snapshot of a workflow: ``.status``, counts, and every task's status.

        Returns None for an unknown id.
        """
        self._check_open()
        run = self._live(workflow_id)
        if run is not None:
            await anyio.lowlevel.checkpoint()
            return run.snapshot()
        stored = await self._store.load(workflow_id)
        return None if stored is None else stored_snapshot(stored)

    async def wait_for_workflow(
        self, workflow_id: str, timeout: float | None = None
    ) -> dict[str, Any]:
        """Wait for a workflow to finish and return its results (as :meth:`run_workflow`).

        Raises:
            WorkflowError: WORKFLOW_TIMEOUT if ``timeout`` seconds pass first (the
                workflow keeps running); WORKFLOW_NOT_FOUND for an unknown id;
                otherwise as :meth:`run_workflow`.
        """
        self._check_open()
        run = self._live(workflow_id)
        if run is None:
            stored = await self._stored(workflow_id)
            return _stored_results(stored)
        with anyio.move_on_after(timeout):
            await run.done.wait()
        if not run.done.is_set():
            raise WorkflowError(
                f"Workflow {workflow_id!r} did not finish within {timeout:g} s; it is still "
                "running (wait again, or cancel it).",
                ErrorCode.WORKFLOW_TIMEOUT,
                {"workflow_id": workflow_id, "timeout_seconds": timeout},
            )
        return run.raise_for_status()

    async def cancel_workflow(self, workflow_id: str) -> bool:
        """Cancel a running workflow: no new task starts, running ones are stopped.

        A stored workflow that never started (:meth:`submit_workflow`) is
        marked ``cancelled`` with its tasks; :meth:`resume_workflow` still runs it.

        Returns:
            True if the workflow was running here, or stored pending, and is now
            cancelled; False otherwise (unknown, finished, or running in
            another process).
        """
        self._check_open()
        await anyio.lowlevel.checkpoint()
        run = self._runs.get(workflow_id)
        if run is None or run.done.is_set():
            return await self._cancel_pending(workflow_id)
        run.cancel_requested = True
        if run.scope is not None:
            run.scope.cancel()
        await run.done.wait()
        return True

    async def _cancel_pending(self, workflow_id: str) -> bool:
        """Mark a stored workflow that never started ``cancelled``, with its tasks."""
        if workflow_id in self._finished:
            return False
        lock = self._store.run_lock(workflow_id)
        if lock is not None:
            try:
                await anyio.to_thread.run_sync(lock.acquire)
            except WorkflowError:  # another live process is running it
                return False
        try:
            stored = await self._store.load(workflow_id)
            if stored is None or stored.status is not WorkflowStatus.PENDING:
                return False
            now = time.time()
            error = WorkflowError(
                f"Workflow {stored.workflow.name!r} was cancelled before it started; "
                "resume it to run it.",
                ErrorCode.WORKFLOW_CANCELLED,
                {"workflow_id": workflow_id},
            )
            events = [
                Event(kind=EventKind.TASK_CANCELLED, workflow_id=workflow_id, task_id=t.id, at=now)
                for t in stored.workflow.tasks
            ]
            events.append(
                Event(
                    kind=EventKind.WORKFLOW_FINISHED,
                    workflow_id=workflow_id,
                    at=now,
                    status=WorkflowStatus.CANCELLED.value,
                    error=error_to_dict(error),
                )
            )
            await self._engine.emit(events)
            return True
        finally:
            if lock is not None:
                lock.release()

    async def resume_workflow(self, workflow_id: str) -> dict[str, Any]:
        """Run the tasks of a stored workflow that have no recorded completion.

        Completed results are reused, never recomputed.

        Raises:
            WorkflowError: WORKFLOW_NOT_FOUND; WORKFLOW_INVALID_STATE if it is
                running in this client or in another live process (the error's
                data names that ``owner``); otherwise as :meth:`run_workflow`.
        """
        self._check_open()
        if workflow_id in self._runs:
            raise WorkflowError(
                f"Workflow {workflow_id!r} is running in this client; use "
                "wait_for_workflow() instead.",
                ErrorCode.WORKFLOW_INVALID_STATE,
                {"workflow_id": workflow_id},
            )
        # Take the run before reading its state, so that a second process
        # resuming it at the same time is refused instead of running it twice.
        lock = self._store.run_lock(workflow_id)
        if lock is not None:
            await anyio.to_thread.run_sync(lock.acquire)
        try:
            previous = None if self._store.shares_runs else self._finished.get(workflow_id)
            if previous is not None:  # finished in this client: its state is the freshest
                workflow, completed, created = (
                    previous.workflow,
                    previous.results,
                    previous.created_at,
                )
            else:
                stored = await self._stored(workflow_id)
                workflow, completed, created = stored.workflow, stored.results, stored.created_at
            await self.providers.prepare(workflow)
            run = self._engine.prepare(workflow, completed=completed)
            run.created_at = created or time.time()
            self._runs[workflow_id] = run
            await self._execute(run, owned=True)
        finally:
            if lock is not None:
                lock.release()
        return run.raise_for_status()

    async def run_worker(self) -> None:
        """Execute tasks of workflows that other processes share, until cancelled.

        Needs ``persistence="redis"``: joins every run being shared on that
        Redis (as :meth:`resume_workflow` would) and takes ready tasks while
        it has free slots (``max_concurrent`` per run). Cancelled (or
        interrupted), it hands the tasks it holds back to the others.

        Raises:
            ConfigurationError: the store is not ``redis``.
        """
        self._check_open()
        if not self._store.shares_runs:
            raise ConfigurationError(
                f"run_worker() needs persistence='redis' (this client uses "
                f"{self.persistence!r}): only Redis shares runs between processes.",
                data={"option": "persistence", "value": self.persistence},
            )
        from ._worker import serve

        await serve(self, self._store)

    async def _join(self, stored: StoredRun, ready: Callable[[], Awaitable[bool]]) -> None:
        """Take part in a shared run that another process started (workers).

        The run is prepared first; ``ready()`` then says whether to join.
        """
        workflow = stored.workflow
        await self.providers.prepare(workflow)
        run = self._engine.prepare(workflow, completed=stored.results)
        if not await ready():
            return
        run.created_at = stored.created_at or time.time()
        run.join_only = True
        self._runs[workflow.id] = run
        await self._execute(run, owned=True)

    async def list_workflows(self, limit: int = 20) -> list[Workflow]:
        """The most recently submitted workflows, newest first, as status snapshots."""
        self._check_open()
        stored = await self._store.list_runs(limit)
        out = []
        for item in stored:
            run = self._live(item.workflow.id)
            out.append(run.snapshot() if run is not None else stored_snapshot(item))
        return out

    async def get_task_result(self, workflow_id: str, task_id: str) -> dict[str, Any] | None:
        """One task's result dict (by id or name), or None while it has none.

        Raises:
            WorkflowError: WORKFLOW_NOT_FOUND for an unknown workflow.
            TaskError: TASK_NOT_FOUND for a task not in the workflow.
        """
        self._check_open()
        run = self._live(workflow_id)
        if run is not None:
            await anyio.lowlevel.checkpoint()
            workflow, results = run.workflow, run.results
        else:
            stored = await self._stored(workflow_id)
            workflow, results = stored.workflow, stored.results
        task = workflow.get_task(task_id)
        if task is None:
            raise TaskError(
                f"Workflow {workflow_id!r} has no task {task_id!r}.",
                ErrorCode.TASK_NOT_FOUND,
                {"workflow_id": workflow_id, "task_id": task_id},
            )
        return results.get(task.id)

    async def export_workflow(self, workflow_id: str) -> dict[str, Any]:
        """Everything the store knows about a workflow run, as one JSON-ready dict.

        Returns:
            ``id``, ``name``, ``description``, ``status``, ``created_at``,
            ``started_at``, ``finished_at``, ``error`` and ``tasks``: per task in
            document order its ``id``, ``name``, ``method``, ``dependencies``,
            ``params``, ``status``, ``result``, ``error`` and ``attempts`` (each
            ``{"start", "end", "status", "attempt"}``, times in seconds since the
            epoch; the sqlite and journal stores record them). ``gleitzeit
            report`` draws its page from this.

        Raises:
            WorkflowError: WORKFLOW_NOT_FOUND for an unknown id.
        """
        self._check_open()
        stored = await self._stored(workflow_id)
        return export_run(stored, self._live(workflow_id))

    # --- one-off calls ---------------------------------------------------------

    async def execute_python(
        self,
        code: str | None = None,
        file: str | None = None,
        args: dict[str, Any] | None = None,
        timeout: int = 30,
    ) -> dict[str, Any]:
        """Run Python code or a script once (no retries).

        Returns:
            ``{"result", "stdout", "stderr", "success", "execution_time"}``.

        Raises:
            TaskError: TASK_VALIDATION_FAILED (give exactly one of ``code`` and
                ``file``; the file must exist), TASK_EXECUTION_FAILED (the code
                raised or exited non-zero; traceback in ``e.data``), TASK_TIMEOUT.
        """
        self._check_open()
        if (code is None) == (file is None):
            raise TaskError(
                "execute_python needs exactly one of 'code' and 'file'.",
                ErrorCode.TASK_VALIDATION_FAILED,
                {"task_id": "execute_python"},
            )
        params: dict[str, Any] = {"args": args or {}}
        params["code" if code is not None else "file"] = code if code is not None else file
        call = Call(
            method="python/execute",
            params=params,
            task_id="execute_python",
            timeout=float(timeout),
            isolation=self.isolation,
        )
        return await self._engine.run_call(call)

    async def chat(
        self, prompt: str, model: str = "llama3.2:latest", temperature: float = 0.7
    ) -> str:
        """Ask an Ollama model once and return the reply text (no retries of the call).

        Raises:
            ProviderError: PROVIDER_NOT_AVAILABLE (Ollama unreachable),
                INVALID_PARAMS (unknown model: pull it), PROVIDER_OVERLOADED,
                PROVIDER_UNHEALTHY, PROVIDER_TIMEOUT.
        """
        params = {
            "model": model or DEFAULT_CHAT_MODEL,
            "prompt": prompt,
            "temperature": temperature,
        }
        return await self._reply_text("llm/chat", params)

    async def vision(
        self, image_path: str, prompt: str = "Describe this image", model: str = "llava:latest"
    ) -> str:
        """Ask a vision model about one image and return the reply text.

        Raises:
            TaskError: TASK_VALIDATION_FAILED when the image is missing or unreadable.
            ProviderError: as :meth:`chat`.
        """
        params = {
            "model": model or DEFAULT_VISION_MODEL,
            "prompt": prompt,
            "image_path": image_path,
        }
        return await self._reply_text("llm/vision", params)

    # --- batches ---------------------------------------------------------------

    async def batch_process(
        self,
        directory: str | None = None,
        files: list[str] | None = None,
        pattern: str = "*",
        method: str = "llm/chat",
        prompt: str = "Analyze this file",
        model: str = "llama3.2:latest",
        max_concurrent: int = 5,
    ) -> BatchResult:
        """Send many files through one method, ``max_concurrent`` at a time.

        The batch runs as a workflow of its own (id ``BatchResult.batch_id``):
        it is stored, reports progress through ``on_event``, and a batch cut
        short can be finished with :meth:`resume_workflow`. Each file is read
        when its own task runs, so a missing, unreadable, binary or over-size
        file (or a dangling symlink) fails that file's entry only.

        Args:
            directory: A folder whose files matching ``pattern`` are processed.
            files: Paths of files to process (besides the directory's, if given).
            pattern: Which files of ``directory``, relative to it: ``*`` and ``?``
                stay within a folder, ``**/`` spans folders (``**/*.md``), and
                braces give alternatives (``*.{md,txt}``).
            method: ``llm/chat`` or ``llm/generate`` (the file's text follows the
                prompt), ``llm/vision`` (the file is the image).
            prompt: What to ask about each file.
            model: The Ollama model.
            max_concurrent: Files in flight at once (a hard bound, and reached:
                not held back by the default per-host Ollama bound; an
                ``ollama_max_in_flight`` set on the client lowers it).

        Returns:
            A :class:`BatchResult`: per file its status, content (the reply),
            error and duration.

        Raises:
            WorkflowError: WORKFLOW_VALIDATION_FAILED when neither ``directory``
                nor ``files`` is given, the directory is missing, nothing
                matches, ``max_concurrent`` < 1 or the method is unknown;
                WORKFLOW_CANCELLED / WORKFLOW_TIMEOUT when the whole batch
                stopped (partial results in ``e.data["batch"]``).
        """
        template = {"method": method, "model": model, "prompt": prompt}
        from ._batch import batch_document, run_batch

        doc = batch_document(
            name=f"Batch {method}",
            directory=directory,
            files=files,
            pattern=pattern,
            template=template,
            max_concurrent=max_concurrent,
        )
        return await run_batch(self, doc)

    async def batch_vision(
        self,
        directory: str,
        pattern: str = "*.{jpg,png,jpeg}",
        prompt: str = "Describe this image",
        model: str = "llava:latest",
        *,
        max_concurrent: int = 5,
    ) -> BatchResult:
        """Ask a vision model about every image in ``directory`` matching ``pattern``.

        As :meth:`batch_process` with ``method="llm/vision"``: one entry per
        image, ``max_concurrent`` images in flight.

        Raises:
            WorkflowError: as :meth:`batch_process`.
        """
        return await self.batch_process(
            directory=directory,
            pattern=pattern,
            method="llm/vision",
            prompt=prompt,
            model=model,
            max_concurrent=max_concurrent,
        )

    async def batch_python(
        self, script: str, data_files: list[str], max_concurrent: int = 5
    ) -> BatchResult:
        """Run a Python script once per data file, ``max_concurrent`` at a time.

        The script finds its file as ``args["file_path"]`` (also
        ``context["file_path"]`` and the global ``file_path``) and sets the
        global ``result``, which becomes the entry's content (as itself when it
        is a string, else as JSON). A script that raises fails that file's
        entry only. Each run has the default python timeout (30 s).

        Raises:
            WorkflowError: WORKFLOW_VALIDATION_FAILED when the script does not
                exist, ``data_files`` is empty or ``max_concurrent`` < 1; as
                :meth:`batch_process` otherwise.
        """
        from ._batch import batch_document, run_batch

        doc = batch_document(
            name=f"Batch {Path(script).name}",
            directory=None,
            files=data_files,
            pattern="*",
            template={"method": "python/execute", "file": script},
            max_concurrent=max_concurrent,
        )
        return await run_batch(self, doc)

    async def _reply_text(self, method: str, params: dict[str, Any]) -> str:
        """One llm call outside any workflow; its reply text."""
        self._check_open()
        call = Call(method=method, task_id=method.removeprefix("llm/"), params=params)
        return str((await self._engine.run_call(call))["response"])

    async def list_providers(self) -> list[dict[str, Any]]:
        """Every provider and the methods it serves, in registration order.

        Returns:
            One dict per provider: ``provider_id`` and ``methods``, a list of
            ``{"name", "description", "params"}`` where ``params`` lists the
            accepted parameter names (None: the provider checks them itself).
        """
        self._check_open()
        await anyio.lowlevel.checkpoint()
        return [
            {
                "provider_id": provider.provider_id,
                "methods": [
                    {
                        "name": spec.name,
                        "description": spec.description,
                        "params": None if spec.params is None else sorted(spec.params),
                    }
                    for spec in provider.specs
                ],
            }
            for provider in self.providers
        ]

    async def compact_journal(self) -> dict[str, int]:
        """Rewrite the journal as the shortest record of every stored workflow's state.

        A journal only grows; compacting keeps each workflow's definition,
        status and each task's last status, result or error, and drops the
        history in between. It is safe while workflows run: it happens between
        two writes, and a crash during it leaves the old or the new file.

        Returns:
            ``runs`` (workflows kept), ``bytes_before``, ``bytes_after`` and
            ``events_after`` (records in the new file).

        Raises:
            ConfigurationError: CONFIGURATION_ERROR if this client's
                persistence is not ``journal`` (the other stores need no compaction).
            PersistenceError: the new file could not be written (the old one is kept).
        """
        self._check_open()
        from ._stores.journal import JournalStore

        if not isinstance(self._store, JournalStore):
            raise ConfigurationError(
                f"compact_journal() compacts a journal, but this client's persistence is "
                f"{self.persistence!r}; only persistence='journal' needs compaction.",
                data={"option": "persistence", "value": self.persistence},
            )
        return await self._store.compact()

    async def provider_health(self) -> list[dict[str, Any]]:
        """Each provider's health, in registration order: ``provider_id``,
        ``reachable`` and what else it reports (Ollama: version and models;
        python: workers; MCP: each server's state and tools)."""
        self._check_open()
        return await self.providers.health()


def _stored_results(stored: StoredRun) -> dict[str, Any]:
    """Results of a finished stored workflow, or its error (as run_workflow)."""
    tasks = stored.workflow.tasks
    results = {t.id: stored.results[t.id] for t in tasks if t.id in stored.results}
    if stored.status is WorkflowStatus.COMPLETED:
        return results
    if not stored.status.is_final:
        raise WorkflowError(
            f"Workflow {stored.workflow.id!r} is {stored.status} but not running in this "
            "client; resume_workflow() finishes it.",
            ErrorCode.WORKFLOW_INVALID_STATE,
            {"workflow_id": stored.workflow.id},
        )
    if stored.error is not None:
        error = error_from_dict(stored.error)
    else:
        failed = next((t.id for t in tasks if t.id in stored.errors), None)
        error = (
            error_from_dict(stored.errors[failed])
            if failed is not None
            else WorkflowError(
                f"Workflow {stored.workflow.id!r} ended {stored.status}.",
                ErrorCode.WORKFLOW_EXECUTION_FAILED,
            )
        )
    error.data["workflow_id"] = stored.workflow.id
    error.data["results"] = results
    raise error


GleitzeitClient.__module__ = "gleitzeit"


def _background_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """One exception for the client's own background failures.

    A lone :class:`GleitzeitError` (a store that failed, say) is itself;
    interrupts and cancellation leave as they are; anything else becomes one
    ``INTERNAL_ERROR`` naming every failure.
    """
    leaves = leaf_exceptions(group)
    for leaf in leaves:
        if not isinstance(leaf, Exception):
            return leaf  # KeyboardInterrupt, SystemExit or a cancellation
    if len(leaves) == 1 and isinstance(leaves[0], GleitzeitError):
        return leaves[0]
    names = "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
    return GleitzeitError(
        f"The client's background work failed ({names}); this is a bug in gleitzeit or "
        "in a provider: please report it with the traceback (debug=True logs more).",
        ErrorCode.INTERNAL_ERROR,
        {"errors": [f"{type(e).__name__}: {e}" for e in leaves]},
    )
