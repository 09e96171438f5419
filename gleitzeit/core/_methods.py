"""The built-in methods: their protocol and the parameters they accept.

The loader checks task params against these specs; providers implement them.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

__all__ = ["METHODS", "MethodSpec", "protocol_for"]

_NUM = (int, float)
_TEXT = (str,)


@attrs.frozen
class MethodSpec:
    """What a method accepts.

    Attributes:
        name: ``"llm/chat"`` etc.
        params: param name → accepted Python types.
        one_of: groups of which exactly one param must be given.
        any_of: groups of which at least one param must be given.
        at_most_one: groups of aliases of which only one may be given.
    """

    name: str
    params: dict[str, tuple[type, ...]]
    one_of: tuple[tuple[str, ...], ...] = ()
    any_of: tuple[tuple[str, ...], ...] = ()
    at_most_one: tuple[tuple[str, ...], ...] = ()

    @property
    def protocol(self) -> str:
        """The protocol implied by the method's prefix (``llm/v1`` ...)."""
        return protocol_for(self.name) or ""


def protocol_for(method: str) -> str | None:
    """``llm/*`` → ``llm/v1``, ``python/*`` → ``python/v1``, ``mcp/*`` → ``mcp/v1``."""
    prefix = method.split("/", 1)[0]
    return f"{prefix}/v1" if prefix in ("llm", "python", "mcp") and "/" in method else None


_LLM_COMMON: Final[dict[str, tuple[type, ...]]] = {
    "model": _TEXT,
    "system": _TEXT,
    "temperature": _NUM,
    "max_tokens": (int,),
    "options": (dict,),
    "format": (str, dict),
    "keep_alive": (str, int, float),
    "file_path": _TEXT,
    "files": (list,),
    "batch_mode": (bool,),  # accepted from the earlier system, ignored
}

_SPECS: Final = (
    MethodSpec(
        "python/execute",
        {"code": _TEXT, "file": _TEXT, "args": (dict,), "context": (dict,), "timeout": _NUM},
        one_of=(("code", "file"),),
        at_most_one=(("args", "context"),),
    ),
    MethodSpec(
        "llm/chat",
        {**_LLM_COMMON, "messages": (list,), "prompt": _TEXT},
        any_of=(("messages", "prompt"),),
    ),
    MethodSpec("llm/generate", {**_LLM_COMMON, "prompt": _TEXT}, any_of=(("prompt",),)),
    MethodSpec(
        "llm/vision",
        {
            **_LLM_COMMON,
            "messages": (list,),
            "prompt": _TEXT,
            "images": (list, str),
            "image_path": _TEXT,
            "image_paths": (list,),
        },
        any_of=(("images", "image_path", "image_paths"),),
    ),
    MethodSpec("mcp/tool.echo", {"message": (str,), "arguments": (dict,)}),
    MethodSpec(
        "mcp/tool.add", {"a": (int, float, str), "b": (int, float, str), "arguments": (dict,)}
    ),
    MethodSpec("mcp/tool.multiply", {"a": _NUM, "b": _NUM, "arguments": (dict,)}),
    MethodSpec("mcp/tool.concat", {"strings": (list,), "separator": _TEXT, "arguments": (dict,)}),
)

#: Every built-in method by name.
METHODS: Final[dict[str, MethodSpec]] = {spec.name: spec for spec in _SPECS}


def describe_types(types: tuple[type, ...]) -> str:
    """``(int, float)`` → ``"a number"`` and so on, for error messages."""
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "a mapping",
        list: "a list",
        bool: "true/false",
    }
    if set(types) >= {int, float}:
        rest = [t for t in types if t not in (int, float)]
        return " or ".join(["a number", *(names.get(t, t.__name__) for t in rest)])
    return " or ".join(names.get(t, t.__name__) for t in types)


def type_ok(value: Any, types: tuple[type, ...]) -> bool:
    """Like ``isinstance`` but a bool is not a number."""
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)
