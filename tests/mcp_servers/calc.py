"""A small MCP server for the tests: ``python calc.py`` (stdio) or ``python calc.py http PORT``."""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("calc")


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def stats(values: list[float]) -> dict[str, float]:
    """Mean and maximum of some numbers."""
    return {"mean": sum(values) / len(values), "max": max(values)}


@server.tool(structured_output=False)
def shout(text: str) -> str:
    """Upper-case text, as plain text content only."""
    return text.upper()


@server.tool()
def fail(message: str) -> str:
    """Always fail with ``message``."""
    raise ToolError(message)


@server.tool()
def die() -> str:
    """Exit the whole server process mid-call."""
    os._exit(3)


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


@server.tool()
def env(name: str) -> str:
    """One environment variable (empty if unset)."""
    return os.environ.get(name, "")


_gauge = {"now": 0, "peak": 0}


@server.tool()
async def gauge(seconds: float) -> int:
    """Sleep while counting the calls in flight; returns the peak so far."""
    _gauge["now"] += 1
    _gauge["peak"] = max(_gauge["peak"], _gauge["now"])
    try:
        await anyio.sleep(seconds)
    finally:
        _gauge["now"] -= 1
    return _gauge["peak"]


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then say so."""
    await anyio.sleep(seconds)
    return "slept"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
