"""``mcp/<server>/<tool>``: tools of real Model Context Protocol servers.

Servers are declared on the client (``mcp_servers=``) or in a workflow's
``mcp_servers:``: ``{"command": [...], "env": {...}, "cwd": ...}`` starts a
stdio server, ``{"url": ...}`` connects to a streamable-HTTP one; either may
set ``max_concurrent`` (calls in flight to that server, default 8).

* A server starts lazily, on the first workflow that uses it (its tools are
  listed then, to check the tasks' arguments before anything runs) or the
  first call; then one session serves every task, until the client closes.
* Each session lives in a task of the client's task group, so it ends with
  the client; a stdio server's process is stopped then.
* A server that dies is started again for the next call.
* The official ``mcp`` SDK (``pip install 'gleitzeit[mcp]'``) is imported on
  first use only.
"""

from __future__ import annotations

import functools
import json
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel
import anyio.to_thread
import attrs

from ..core._methods import MethodSpec
from ..core._refs import find_refs
from ..core.errors import ConfigurationError, ErrorCode, ProviderError
from . import BaseProvider

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anyio.abc import TaskGroup, TaskStatus

    from ..core._models import Workflow
    from . import Call

__all__ = ["DEFAULT_MAX_CONCURRENT", "McpProvider", "check_server_config"]

log = logging.getLogger("gleitzeit.mcp")

#: Calls in flight per server unless its config sets ``max_concurrent``.
DEFAULT_MAX_CONCURRENT: Final = 8
#: Seconds a server may take to start and list its tools.
START_TIMEOUT: Final = 30.0
_KEEP_WORKFLOWS: Final = 4096
_KEYS: Final = frozenset({"command", "env", "cwd", "url", "max_concurrent"})
_INSTALL: Final = "install the MCP extra: pip install 'gleitzeit[mcp]'"


def check_server_config(name: Any, raw: Any) -> list[str]:
    """What is wrong with one server declaration (empty if nothing)."""
    if not isinstance(name, str) or not name or "/" in name:
        return [f"server name {name!r} must be a non-empty string without '/'"]
    if not isinstance(raw, dict):
        return [f"server {name!r} must be a mapping with 'command' (stdio) or 'url' (HTTP)"]
    problems = [f"server {name!r}: unknown field {key!r}" for key in raw if key not in _KEYS]
    command, url = raw.get("command"), raw.get("url")
    if (command is None) == (url is None):
        problems.append(f"server {name!r} needs exactly one of 'command' (stdio) and 'url' (HTTP)")
    if command is not None and (
        not isinstance(command, list)
        or not command
        or not all(isinstance(c, str) and c for c in command)
    ):
        problems.append(f"server {name!r}: 'command' must be a non-empty list of strings")
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        problems.append(f"server {name!r}: 'url' must be an http:// or https:// URL")
    env = raw.get("env")
    if env is not None and (
        not isinstance(env, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        problems.append(f"server {name!r}: 'env' must map names to strings")
    if raw.get("cwd") is not None and not isinstance(raw["cwd"], str):
        problems.append(f"server {name!r}: 'cwd' must be a string")
    limit = raw.get("max_concurrent")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        problems.append(f"server {name!r}: 'max_concurrent' must be a positive integer")
    return problems


@attrs.define(eq=False)
class _Server:
    """One declared server and its live session (if started)."""

    name: str
    config: dict[str, Any]
    limiter: anyio.CapacityLimiter | None = None
    session: Any = None
    tools: dict[str, Any] = attrs.Factory(dict)
    stop: anyio.Event | None = None
    starting: anyio.Lock | None = None
    starts: int = 0
    error: str | None = None

    def __repr__(self) -> str:
        where = self.config.get("url") or " ".join(self.config.get("command") or ())
        state = "running" if self.session is not None else "stopped"
        return f"<McpServer {self.name!r} {where} {state} starts={self.starts}>"

    @property
    def description(self) -> str:
        url = self.config.get("url")
        return f"MCP server {self.name!r} ({url or ' '.join(self.config['command'])})"


def _tool_of(method: str) -> tuple[str, str] | None:
    """``mcp/<server>/<tool>`` → (server, tool), or None for another shape."""
    parts = method.split("/", 2)
    if len(parts) != 3 or parts[0] != "mcp" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class McpProvider(BaseProvider):
    """Calls tools of MCP servers.

    Args:
        servers: The client's servers by name (see the module docstring).

    Raises:
        ConfigurationError: CONFIGURATION_ERROR for a malformed declaration.
    """

    provider_id = "mcp"
    prefixes = ("mcp/",)

    def __init__(self, servers: Mapping[str, Any] | None = None) -> None:
        problems = [
            p for name, raw in (servers or {}).items() for p in check_server_config(name, raw)
        ]
        if problems:
            raise ConfigurationError(
                "mcp_servers has problems: " + "; ".join(problems) + ".",
                data={"option": "mcp_servers", "problems": problems},
            )
        self._by_key: dict[str, _Server] = {}
        self._client_servers: dict[str, _Server] = {
            name: self._declare(name, raw) for name, raw in (servers or {}).items()
        }
        #: (workflow id, name) → server, for workflows that declare their own;
        #: the oldest entries go past _KEEP_WORKFLOWS (their sessions stay shared).
        self._workflow_servers: dict[tuple[str, str], _Server] = {}
        self.specs = tuple(
            MethodSpec(f"mcp/{name}/*", description=f"Tools of the MCP server {name!r}.")
            for name in self._client_servers
        )
        self._tg: TaskGroup | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<McpProvider servers={list(self._client_servers)} live={self._live_count()}>"

    def _live_count(self) -> int:
        return sum(1 for s in self._by_key.values() if s.session is not None)

    def _declare(self, name: str, raw: Mapping[str, Any]) -> _Server:
        """One _Server per distinct declaration: identical ones share a session."""
        config = dict(raw)
        key = json.dumps([name, config], sort_keys=True)
        server = self._by_key.get(key)
        if server is None:
            server = self._by_key[key] = _Server(name, config)
        return server

    # --- lifecycle ----------------------------------------------------------------

    async def open(self, task_group: TaskGroup) -> None:
        """Remember the client's task group: sessions run there once started."""
        self._tg = task_group

    async def aclose(self) -> None:
        """Stop every session (a stdio server's process exits or is killed)."""
        self._closed = True
        for server in self._by_key.values():
            if server.stop is not None:
                server.stop.set()
        # The sessions end with the client's task group, which waits for each
        # transport to shut its server down.

    async def health(self) -> dict[str, Any]:
        """Each known server's state and tools (starts no server)."""
        await anyio.lowlevel.checkpoint()
        servers = {
            s.name: {
                "running": s.session is not None,
                "starts": s.starts,
                "tools": sorted(s.tools),
                **({"error": s.error} if s.error else {}),
            }
            for s in self._by_key.values()
        }
        return {"provider_id": self.provider_id, "reachable": True, "servers": servers}

    def _server(self, workflow_id: str | None, name: str) -> _Server | None:
        if workflow_id is not None:
            server = self._workflow_servers.get((workflow_id, name))
            if server is not None:
                return server
        return self._client_servers.get(name)

    async def _session(self, server: _Server) -> Any:
        """The server's live session, starting it first if needed."""
        if server.starting is None:
            server.starting = anyio.Lock()
        async with server.starting:
            if server.session is None:
                if self._closed or self._tg is None:
                    raise ProviderError(
                        f"{server.description} cannot start: the client is not open; use it "
                        "inside 'async with'.",
                        ErrorCode.SYSTEM_SHUTDOWN,
                        {"provider_id": self.provider_id, "server": server.name},
                    )
                await self._tg.start(self._serve, server, name=f"gleitzeit mcp {server.name}")
            return server.session

    async def _serve(self, server: _Server, *, task_status: TaskStatus[None]) -> None:
        """Run one session until it is stopped (or the server goes away)."""
        try:
            from mcp.client.session import ClientSession
        except ImportError as exc:
            raise ProviderError(
                f"{server.description} cannot start: the 'mcp' package is missing; {_INSTALL}.",
                ErrorCode.PROVIDER_INITIALIZATION_FAILED,
                {"provider_id": self.provider_id, "server": server.name},
            ) from exc
        import tempfile  # only a server start needs it

        stop = server.stop = anyio.Event()
        started = False
        errlog = await anyio.to_thread.run_sync(
            functools.partial(tempfile.TemporaryFile, "w+", encoding="utf-8", errors="replace")
        )
        with errlog:
            try:
                async with AsyncExitStack() as stack:
                    read, write = await self._connect(server, stack, errlog)
                    session = await stack.enter_async_context(ClientSession(read, write))
                    with anyio.fail_after(START_TIMEOUT):
                        await session.initialize()
                        listing = await session.list_tools()
                    server.tools = {tool.name: tool for tool in listing.tools}
                    server.session = session
                    server.starts += 1
                    server.error = None
                    if server.limiter is None:
                        limit = server.config.get("max_concurrent") or DEFAULT_MAX_CONCURRENT
                        server.limiter = anyio.CapacityLimiter(limit)
                    log.debug("%s started: tools %s", server.description, sorted(server.tools))
                    started = True
                    task_status.started()
                    await stop.wait()
            except Exception as exc:
                if started:  # the server went away; the next call starts it again
                    log.debug("%s ended: %r", server.description, exc)
                    server.error = f"{type(exc).__name__}: {exc}"
                    return
                errlog.seek(0)
                tail = errlog.read()[-2000:].strip()
                server.error = f"{type(exc).__name__}: {exc}"
                raise ProviderError(
                    f"{server.description} cannot start ({server.error})"
                    + (f"; its stderr ends with: {tail}" if tail else "")
                    + "; check the command or URL.",
                    ErrorCode.PROVIDER_INITIALIZATION_FAILED,
                    {"provider_id": self.provider_id, "server": server.name, "stderr": tail},
                ) from exc
            finally:
                server.session = None
                if server.stop is stop:
                    server.stop = None

    async def _connect(self, server: _Server, stack: AsyncExitStack, errlog: Any) -> Any:
        config = server.config
        if config.get("url"):
            from mcp.client.streamable_http import streamable_http_client

            streams = await stack.enter_async_context(streamable_http_client(config["url"]))
        else:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            command = config["command"]
            params = StdioServerParameters(
                command=command[0],
                args=list(command[1:]),
                env=config.get("env"),
                cwd=config.get("cwd"),
            )
            streams = await stack.enter_async_context(stdio_client(params, errlog=errlog))
        return streams[0], streams[1]

    def _stopped(self, server: _Server, session: Any) -> None:
        """Drop a dead session so the next call starts the server again."""
        if server.session is session:
            server.session = None
            if server.stop is not None:
                server.stop.set()

    # --- checking ---------------------------------------------------------------------

    async def prepare(self, workflow: Workflow) -> list[dict[str, Any]]:
        """Register the workflow's own servers, start the servers it uses, and check
        each task's tool and literal arguments against the tool's input schema."""
        problems: list[dict[str, Any]] = []
        declared = getattr(workflow, "mcp_servers", None) or {}
        for name, raw in declared.items():
            self._workflow_servers.pop((workflow.id, name), None)
            self._workflow_servers[(workflow.id, name)] = self._declare(name, raw)
        while len(self._workflow_servers) > _KEEP_WORKFLOWS:
            del self._workflow_servers[next(iter(self._workflow_servers))]
        failed: set[str] = set()
        for task in workflow.tasks:
            parsed = _tool_of(task.method)
            if parsed is None:
                if task.method.startswith("mcp/") and "/" in task.method[4:]:
                    problems.append(
                        {
                            "task": task.id,
                            "field": "method",
                            "message": f"{task.method!r} is not of the form mcp/<server>/<tool>",
                        }
                    )
                continue
            name, tool = parsed
            server = self._server(workflow.id, name)
            if server is None:
                known = sorted({*self._client_servers, *declared})
                problems.append(
                    {
                        "task": task.id,
                        "field": "method",
                        "message": f"no MCP server {name!r} is declared (known: "
                        f"{', '.join(known) or 'none'}); declare it in mcp_servers",
                    }
                )
                continue
            if name in failed:
                continue
            try:
                await self._session(server)
            except ProviderError as exc:
                failed.add(name)
                problems.append({"task": task.id, "field": "method", "message": exc.message})
                continue
            spec = server.tools.get(tool)
            if spec is None:
                problems.append(
                    {
                        "task": task.id,
                        "field": "method",
                        "message": f"MCP server {name!r} has no tool {tool!r}; its tools: "
                        f"{', '.join(sorted(server.tools)) or 'none'}",
                    }
                )
                continue
            for field, message in _schema_problems(spec.input_schema, task.params, literal=True):
                problems.append({"task": task.id, "field": field, "message": message})
        return problems

    # --- calling ------------------------------------------------------------------------

    def _error(
        self, call: Call, server: str, tool: str, message: str, code: ErrorCode, **extra: Any
    ) -> ProviderError:
        return ProviderError(
            f"Task {call.task_id!r}: {message}",
            code,
            {
                "provider_id": self.provider_id,
                "task_id": call.task_id,
                "server": server,
                "tool": tool,
                **extra,
            },
        )

    async def execute(self, call: Call) -> dict[str, Any]:
        """Call one tool; its arguments are checked against the tool's schema first.

        Raises:
            ProviderError: PROVIDER_NOT_FOUND (no such server), METHOD_NOT_FOUND (no
                such tool), INVALID_PARAMS (arguments the schema rejects),
                PROVIDER_INITIALIZATION_FAILED (the server cannot start),
                TASK_EXECUTION_FAILED (the tool reported an error),
                PROVIDER_UNHEALTHY (the server died or broke the connection mid-call).
        """
        parsed = _tool_of(call.method)
        if parsed is None:
            raise ProviderError(
                f"Task {call.task_id!r}: {call.method!r} is not of the form mcp/<server>/<tool>.",
                ErrorCode.METHOD_NOT_FOUND,
                {"provider_id": self.provider_id, "task_id": call.task_id, "method": call.method},
            )
        name, tool = parsed
        server = self._server(call.workflow_id, name)
        if server is None:
            raise self._error(
                call,
                name,
                tool,
                f"no MCP server {name!r} is declared (known: "
                f"{', '.join(sorted(self._client_servers)) or 'none'}); declare it in mcp_servers.",
                ErrorCode.PROVIDER_NOT_FOUND,
            )
        session = await self._session(server)
        spec = server.tools.get(tool)
        if spec is None:
            raise self._error(
                call,
                name,
                tool,
                f"MCP server {name!r} has no tool {tool!r}; its tools: "
                f"{', '.join(sorted(server.tools)) or 'none'}.",
                ErrorCode.METHOD_NOT_FOUND,
            )
        problems = _schema_problems(spec.input_schema, call.params, literal=False)
        if problems:
            raise self._error(
                call,
                name,
                tool,
                f"arguments of {name}/{tool} do not match its input schema: "
                + "; ".join(f"{field}: {message}" for field, message in problems)
                + ".",
                ErrorCode.INVALID_PARAMS,
                problems=[{"field": f, "message": m} for f, m in problems],
            )
        assert server.limiter is not None
        from mcp.shared.exceptions import MCPError

        async with server.limiter:
            try:
                result = await session.call_tool(tool, dict(call.params))
            except (MCPError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
                code = getattr(exc, "code", None)
                closed = not isinstance(exc, MCPError) or code == -32000
                if closed:
                    self._stopped(server, session)
                    raise self._error(
                        call,
                        name,
                        tool,
                        f"MCP server {name!r} went away during {tool!r} ({exc}); it is started "
                        "again for the next call.",
                        ErrorCode.PROVIDER_UNHEALTHY,
                    ) from exc
                raise self._error(
                    call,
                    name,
                    tool,
                    f"MCP server {name!r} refused {tool!r}: {exc}",
                    ErrorCode.TASK_EXECUTION_FAILED,
                    mcp_code=code,
                ) from exc
        text = "\n".join(
            block.text for block in result.content if getattr(block, "type", None) == "text"
        )
        if result.is_error:
            raise self._error(
                call,
                name,
                tool,
                f"tool {name}/{tool} reported an error: {text or '(no message)'}",
                ErrorCode.TASK_EXECUTION_FAILED,
                tool_message=text,
            )
        return _result_dict(result.structured_content, text)


def _result_dict(structured: Any, text: str) -> dict[str, Any]:
    """The task's result dict: structured content, with ``result`` = the tool's value."""
    if structured is None:
        return {"result": text}
    if isinstance(structured, dict):
        out = dict(structured)
        out.setdefault("result", structured)
        return out
    return {"result": structured}


def _schema_problems(
    schema: Mapping[str, Any], params: Mapping[str, Any], *, literal: bool
) -> list[tuple[str, str]]:
    """(field, message) for each way ``params`` break ``schema``; with ``literal``,
    arguments holding ``${...}`` references are left for the run."""
    import jsonschema  # type: ignore[import-untyped]  # a dependency of the mcp SDK

    deferred: set[str] = set()
    if literal:
        deferred = {key for key, value in params.items() if next(find_refs(value), None)}
    validator_cls = jsonschema.validators.validator_for(schema)
    problems = []
    for error in validator_cls(schema).iter_errors(dict(params)):
        path = list(error.absolute_path)
        if path and path[0] in deferred:
            continue
        field = "params" + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in path)
        problems.append((field, error.message))
    return problems
