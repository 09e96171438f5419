"""The built-in MCP tools: ``mcp/tool.echo``, ``.add``, ``.multiply``, ``.concat``.

They run inline (no server) with the result keys of the earlier gleitzeit,
plus ``result`` on echo and concat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..core._methods import MethodSpec
from ..core.errors import ErrorCode, TaskError
from . import BaseProvider

if TYPE_CHECKING:
    from . import Call

__all__ = ["BUILTIN_SPECS", "BuiltinToolsProvider"]

_ARGS: Final = {"arguments": (dict,)}

#: The methods this provider serves.
BUILTIN_SPECS: Final = (
    MethodSpec(
        "mcp/tool.echo",
        {"message": (str,), **_ARGS},
        description="Echo 'message' back.",
    ),
    MethodSpec(
        "mcp/tool.add",
        {"a": (int, float, str), "b": (int, float, str), **_ARGS},
        description="Add two numbers 'a' and 'b' (two strings are joined).",
    ),
    MethodSpec(
        "mcp/tool.multiply",
        {"a": (int, float), "b": (int, float), **_ARGS},
        description="Multiply two numbers 'a' and 'b'.",
    ),
    MethodSpec(
        "mcp/tool.concat",
        {"strings": (list,), "separator": (str,), **_ARGS},
        description="Join 'strings' with 'separator' (default one space).",
    ),
)


def _number(call: Call, args: dict[str, Any], key: str, default: float) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskError(
            f"Task {call.task_id!r}: {call.method} needs a number for {key!r}, not "
            f"{type(value).__name__} {value!r:.40}.",
            ErrorCode.INVALID_PARAMS,
            {"task_id": call.task_id, "parameter": key},
        )
    return value


class BuiltinToolsProvider(BaseProvider):
    """Executes the built-in MCP tools in-process."""

    provider_id = "mcp-builtin"
    specs = BUILTIN_SPECS

    def runs_inline(self, call: Call) -> bool:
        """Always: these are tiny pure functions."""
        return True

    async def execute(self, call: Call) -> dict[str, Any]:
        """Same as :meth:`run_inline`."""
        return self.run_inline(call)

    def run_inline(self, call: Call) -> dict[str, Any]:
        """Run one tool."""
        args = call.params.get("arguments")
        if not isinstance(args, dict):
            args = call.params
        tool = call.method.rsplit(".", 1)[-1]
        if tool == "echo":
            message = args.get("message", "")
            if not isinstance(message, str):
                message = str(message)
            return {"response": message, "result": message, "echoed": True, "length": len(message)}
        if tool in ("add", "multiply"):
            if tool == "add" and isinstance(args.get("a"), str) and isinstance(args.get("b"), str):
                joined = args["a"] + args["b"]
                return {
                    "response": joined,
                    "result": joined,
                    "calculation": f"{args['a']} + {args['b']} = {joined}",
                }
            a = _number(call, args, "a", 0 if tool == "add" else 1)
            b = _number(call, args, "b", 0 if tool == "add" else 1)
            value = a + b if tool == "add" else a * b
            sign = "+" if tool == "add" else "*"
            return {
                "response": str(value),
                "result": value,
                "calculation": f"{a} {sign} {b} = {value}",
            }
        strings = args.get("strings", [])
        if not isinstance(strings, list):
            strings = [strings]
        separator = args.get("separator", " ")
        joined = str(separator).join(str(s) for s in strings)
        return {"response": joined, "result": joined, "joined": True, "count": len(strings)}
