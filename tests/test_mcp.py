"""Real MCP servers (written with the official SDK) as workflow steps, on trio and asyncio."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from gleitzeit import GleitzeitClient, SyncGleitzeitClient
from gleitzeit.core.errors import (
    ConfigurationError,
    ErrorCode,
    ProviderError,
    TaskTimeoutError,
    WorkflowError,
)

from .conftest import alive, child_pids

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio

CALC_SCRIPT = str(Path(__file__).parent / "mcp_servers" / "calc.py")
CALC = {"command": [sys.executable, CALC_SCRIPT]}


def client(**servers: dict[str, Any]) -> GleitzeitClient:
    return GleitzeitClient(
        persistence="memory", isolation="inline", mcp_servers=servers or {"calc": CALC}
    )


def tool(name: str, method: str, **params: Any) -> dict[str, Any]:
    return {"name": name, "method": method, "params": params}


async def test_tools_feed_python_through_references() -> None:
    """A tool's value is `result` (a wrapped primitive unwrapped), structured content
    keeps its keys, text-only tools give their text, and ${...} passes them on."""
    async with client() as c:
        results = await c.run_workflow(
            {
                "name": "calc",
                "tasks": [
                    tool("sum", "mcp/calc/add", a=1, b=2.5),
                    tool("stats", "mcp/calc/stats", values=[1, "${sum.result}"]),
                    tool("loud", "mcp/calc/shout", text="hi"),
                    {
                        "name": "report",
                        "method": "python/execute",
                        "params": {
                            "code": "total = ${sum.result}\nresult = f'{total * 2} ${loud.result}'",
                        },
                    },
                ],
            }
        )
        health = {h["provider_id"]: h for h in await c.provider_health()}
    assert results["sum"] == {"result": 3.5}
    assert results["stats"] == {"mean": 2.25, "max": 3.5, "result": {"mean": 2.25, "max": 3.5}}
    assert results["loud"] == {"result": "HI"}
    assert results["report"]["result"] == "7.0 HI"
    server = health["mcp"]["servers"]["calc"]
    assert server["running"] is True
    assert server["starts"] == 1
    assert {"add", "stats", "shout", "fail", "die"} <= set(server["tools"])


def test_sync_twin_calls_tools() -> None:
    """The blocking client runs MCP tools too."""
    with SyncGleitzeitClient(persistence="memory", mcp_servers={"calc": CALC}) as c:
        results = c.run_workflow({"name": "s", "tasks": [tool("a", "mcp/calc/add", a=2, b=3)]})
    assert results == {"a": {"result": 5.0}}


async def test_bad_tasks_are_caught_before_anything_runs(tmp_path: Path) -> None:
    """An unknown tool and literal arguments the schema rejects are reported at once,
    and no task runs."""
    marker = tmp_path / "ran"
    async with client() as c:
        with pytest.raises(WorkflowError) as info:
            await c.run_workflow(
                {
                    "name": "bad",
                    "tasks": [
                        {
                            "name": "first",
                            "method": "python/execute",
                            "params": {"code": f"open({str(marker)!r}, 'w').close()"},
                        },
                        tool("typo", "mcp/calc/ad", a=1, b=2),
                        tool("args", "mcp/calc/add", a="one", c=3),
                        tool("later", "mcp/calc/add", a="${first.result}", b=1),
                    ],
                }
            )
    assert info.value.code == ErrorCode.WORKFLOW_VALIDATION_FAILED
    problems = [(p["task"], p["field"], p["message"]) for p in info.value.data["problems"]]
    tasks = [t for t, _, _ in problems]
    assert "later" not in tasks  # a ${...} argument is checked when the task runs
    assert "first" not in tasks
    typo = next(m for t, _, m in problems if t == "typo")
    assert "has no tool 'ad'" in typo
    assert "add" in typo
    args = {f: m for t, f, m in problems if t == "args"}
    assert "'one' is not of type 'number'" in args["params.a"]
    assert any("'b' is a required property" in m for m in args.values())
    assert not marker.exists()
    # A server that is not declared is an unknown method, found while loading.
    async with client() as c:
        with pytest.raises(WorkflowError) as info:
            await c.run_workflow({"name": "n", "tasks": [tool("n", "mcp/other/add", a=1)]})
    message = info.value.data["problems"][0]["message"]
    assert "unknown method 'mcp/other/add'" in message
    assert "mcp/calc/*" in message


async def test_reference_arguments_are_checked_when_the_task_runs() -> None:
    """A ${...} argument that resolves to the wrong type fails its task with INVALID_PARAMS."""
    async with client() as c:
        with pytest.raises(ProviderError) as info:
            await c.run_workflow(
                {
                    "name": "late",
                    "tasks": [
                        tool("word", "mcp/calc/shout", text="x"),
                        tool("sum", "mcp/calc/add", a="${word.result}", b=1),
                    ],
                }
            )
    err = info.value
    assert err.code == ErrorCode.INVALID_PARAMS
    assert (err.data["server"], err.data["tool"], err.data["task_id"]) == ("calc", "add", "sum")
    assert "'X' is not of type 'number'" in err.message
    assert err.data["results"] == {"word": {"result": "X"}}


async def test_a_tool_that_raises_fails_its_task() -> None:
    """A tool's error is a ProviderError naming server and tool, with the tool's message."""
    async with client() as c:
        with pytest.raises(ProviderError) as info:
            await c.run_workflow({"name": "f", "tasks": [tool("f", "mcp/calc/fail", message="no")]})
        # The session survives a tool error.
        assert await c.run_workflow({"name": "ok", "tasks": [tool("a", "mcp/calc/add", a=1, b=1)]})
    err = info.value
    assert err.code == ErrorCode.TASK_EXECUTION_FAILED
    assert (err.data["server"], err.data["tool"]) == ("calc", "fail")
    assert "no" in err.data["tool_message"]
    assert "reported an error" in err.message


async def test_a_server_that_dies_mid_call_is_restarted_for_the_next() -> None:
    """Death mid-call is PROVIDER_UNHEALTHY naming server and tool; the next call
    starts a fresh server process; no server process outlives the client."""
    before = child_pids()
    async with client() as c:
        first = await c.run_workflow({"name": "p", "tasks": [tool("p", "mcp/calc/pid")]})
        with pytest.raises(ProviderError) as info:
            await c.run_workflow({"name": "d", "tasks": [tool("d", "mcp/calc/die")]})
        second = await c.run_workflow({"name": "p2", "tasks": [tool("p", "mcp/calc/pid")]})
        health = {h["provider_id"]: h for h in await c.provider_health()}
        spawned = child_pids() - before
    assert info.value.code == ErrorCode.PROVIDER_UNHEALTHY
    assert (info.value.data["server"], info.value.data["tool"]) == ("calc", "die")
    old, new = first["p"]["result"], second["p"]["result"]
    assert old != new
    assert not alive(old)
    assert new in spawned
    assert health["mcp"]["servers"]["calc"]["starts"] == 2
    assert not any(alive(pid) for pid in spawned)


async def test_a_server_that_cannot_start() -> None:
    """A command that exits at once fails validation with the server named, and a
    one-off call raises PROVIDER_INITIALIZATION_FAILED."""
    broken = {"command": [sys.executable, "-c", "import sys; print('boom', file=sys.stderr)"]}
    async with client(broken=broken) as c:
        with pytest.raises(WorkflowError) as info:
            await c.run_workflow({"name": "b", "tasks": [tool("b", "mcp/broken/x")]})
        engine = c._engine
        from gleitzeit._providers import Call

        with pytest.raises(ProviderError) as err:
            await engine.run_call(Call(method="mcp/broken/x", params={}))
    message = info.value.data["problems"][0]["message"]
    assert "MCP server 'broken'" in message
    assert "cannot start" in message
    assert err.value.code == ErrorCode.PROVIDER_INITIALIZATION_FAILED
    assert err.value.data["server"] == "broken"
    assert "boom" in err.value.data["stderr"]


async def test_unknown_tool_in_a_one_off_call() -> None:
    """Outside a workflow (no validation step), an unknown tool is METHOD_NOT_FOUND
    naming the server, the tool and the tools that exist."""
    from gleitzeit._providers import Call

    async with client() as c:
        with pytest.raises(ProviderError) as info:
            await c._engine.run_call(Call(method="mcp/calc/nope", params={}, task_id="one"))
    err = info.value
    assert err.code == ErrorCode.METHOD_NOT_FOUND
    assert (err.data["server"], err.data["tool"], err.data["task_id"]) == ("calc", "nope", "one")
    assert "add" in err.message


async def test_timeouts_reach_the_call_and_the_session_survives() -> None:
    """A task timeout stops a slow tool call; the same session serves the next call."""
    async with client() as c:
        with pytest.raises(TaskTimeoutError):
            await c.run_workflow(
                {
                    "name": "slow",
                    "tasks": [{**tool("s", "mcp/calc/sleep", seconds=60), "timeout": 0.5}],
                }
            )
        results = await c.run_workflow(
            {"name": "ok", "tasks": [tool("a", "mcp/calc/add", a=1, b=2)]}
        )
        health = {h["provider_id"]: h for h in await c.provider_health()}
    assert results == {"a": {"result": 3.0}}
    assert health["mcp"]["servers"]["calc"]["starts"] == 1


async def test_calls_in_flight_are_bounded_per_server() -> None:
    """With max_concurrent=2, six parallel calls never have more than two in the server."""
    async with client(calc={**CALC, "max_concurrent": 2}) as c:
        results = await c.run_workflow(
            {"name": "b", "tasks": [tool(f"g{i}", "mcp/calc/gauge", seconds=0.2) for i in range(6)]}
        )
    peaks = [r["result"] for r in results.values()]
    assert max(peaks) <= 2, peaks


async def test_cancel_workflow_stops_the_call_in_flight() -> None:
    """cancel_workflow during a slow tool call ends the run at once; the session lives on."""
    async with client() as c:
        wf = await c.run_workflow_async(
            {"name": "slow", "tasks": [tool("s", "mcp/calc/sleep", seconds=60)]}
        )
        mcp: Any = c.providers.provider("mcp")
        server = mcp._client_servers["calc"]
        # Wait until the call is in flight (it holds the server's limiter).
        while server.limiter is None or server.limiter.borrowed_tokens == 0:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        assert await c.cancel_workflow(wf.id) is True
        with pytest.raises(WorkflowError) as info:
            await c.wait_for_workflow(wf.id)
        ok = await c.run_workflow({"name": "ok", "tasks": [tool("a", "mcp/calc/add", a=1, b=1)]})
    assert info.value.code == ErrorCode.WORKFLOW_CANCELLED
    assert ok == {"a": {"result": 2.0}}


async def test_workflow_declares_its_own_server(tmp_path: Path) -> None:
    """A document's `mcp_servers:` (with env and cwd) serves that workflow's tasks."""
    doc = tmp_path / "wf.yaml"
    doc.write_text(
        f"""
name: own server
mcp_servers:
  mine:
    command: [{sys.executable!r}, {CALC_SCRIPT!r}]
    env: {{GREETING: hello}}
    cwd: {str(tmp_path)!r}
tasks:
  - name: greet
    method: mcp/mine/env
    params: {{name: GREETING}}
""",
        encoding="utf-8",
    )
    async with GleitzeitClient(persistence="memory") as c:
        results = await c.run_workflow(doc)
    assert results == {"greet": {"result": "hello"}}


def test_malformed_server_declarations() -> None:
    """On the client: ConfigurationError; in a document: validation problems."""
    with pytest.raises(ConfigurationError) as info:
        GleitzeitClient(persistence="memory", mcp_servers={"x": {"command": "not a list"}})
    assert "'command' must be a non-empty list of strings" in info.value.message
    from gleitzeit import load_workflow

    with pytest.raises(WorkflowError) as err:
        load_workflow(
            {
                "name": "w",
                "mcp_servers": {"a": {"url": "ftp://x", "extra": 1}, "b": {}},
                "tasks": [tool("t", "mcp/a/x")],
            }
        )
    messages = [p["message"] for p in err.value.data["problems"]]
    assert any("'url' must be an http" in m for m in messages)
    assert any("unknown field 'extra'" in m for m in messages)
    assert any("server 'b' needs exactly one of" in m for m in messages)


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """The calc server over streamable HTTP on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, CALC_SCRIPT, "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("the MCP HTTP test server exited") from None
                anyio.run(anyio.sleep, 0.05)
        else:
            raise RuntimeError("the MCP HTTP test server did not start")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


# Under trio the SDK's HTTP transport leaves httpx2 stream generators for the
# garbage collector to finalize (a warning only; the call itself is complete).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_streamable_http_server(http_server: str) -> None:
    """A server declared by URL works like a stdio one."""
    async with client(web={"url": http_server}) as c:
        results = await c.run_workflow({"name": "h", "tasks": [tool("a", "mcp/web/add", a=4, b=5)]})
    assert results == {"a": {"result": 9.0}}
