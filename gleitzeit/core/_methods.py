"""Method specs: what a method accepts, and a lookup table of them.

Providers declare the methods they serve as :class:`MethodSpec`s (see
:mod:`gleitzeit._providers`); the loader checks task params against the
:class:`MethodTable` of the client that runs the workflow. A spec whose name
ends in ``/*`` (``mcp/calc/*``) covers every method under that prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, TypeAlias

import attrs

__all__ = ["CheckHook", "MethodSpec", "MethodTable", "describe_types", "protocol_for", "type_ok"]

#: ``check(params, source_dir)`` → ``(field, message)`` problems found in a
#: task's literal params (``${...}`` values are not resolved yet).
CheckHook: TypeAlias = Callable[[Mapping[str, Any], "str | None"], Iterable[tuple[str, str]]]

_PROTOCOL_PREFIXES: Final = frozenset({"llm", "python", "mcp"})


@attrs.frozen
class MethodSpec:
    """What a method accepts.

    Attributes:
        name: ``"llm/chat"`` etc.; ``"prefix/*"`` covers every method under ``prefix/``.
        params: param name → accepted Python types; None accepts any params
            (the provider checks them before the run, in ``prepare``).
        one_of: groups of which exactly one param must be given.
        any_of: groups of which at least one param must be given.
        at_most_one: groups of aliases of which only one may be given.
        check: an extra check of a task's literal params, run by the loader.
        check_keys: the params ``check`` reads, when it reads only some: a
            task that gives none of them is not passed to it (None: every task is).
        description: one line for listings.
    """

    name: str
    params: dict[str, tuple[type, ...]] | None = None
    one_of: tuple[tuple[str, ...], ...] = ()
    any_of: tuple[tuple[str, ...], ...] = ()
    at_most_one: tuple[tuple[str, ...], ...] = ()
    check: CheckHook | None = attrs.field(default=None, eq=False, repr=False)
    description: str = attrs.field(default="", eq=False, repr=False)
    check_keys: frozenset[str] | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def protocol(self) -> str:
        """The protocol implied by the method's prefix (``llm/v1`` ...)."""
        return protocol_for(self.name) or ""

    @property
    def is_wildcard(self) -> bool:
        """True for a ``prefix/*`` spec."""
        return self.name.endswith("/*")


def protocol_for(method: str) -> str | None:
    """``llm/*`` → ``llm/v1``, ``python/*`` → ``python/v1``, ``mcp/*`` → ``mcp/v1``."""
    prefix = method.split("/", 1)[0]
    return f"{prefix}/v1" if prefix in _PROTOCOL_PREFIXES and "/" in method else None


class MethodTable:
    """Method name → :class:`MethodSpec`, with ``prefix/*`` wildcards.

    Iterating yields the names (wildcards as ``prefix/*``), for listings.

    Raises:
        ValueError: two specs have the same name.
    """

    __slots__ = ("_exact", "_wild")

    def __init__(self, specs: Iterable[MethodSpec] = ()) -> None:
        self._exact: dict[str, MethodSpec] = {}
        self._wild: dict[str, MethodSpec] = {}
        for spec in specs:
            table = self._wild if spec.is_wildcard else self._exact
            key = spec.name[:-1] if spec.is_wildcard else spec.name
            if key in table:
                raise ValueError(f"method {spec.name!r} is declared twice")
            table[key] = spec

    def __repr__(self) -> str:
        return f"<MethodTable {len(self._exact)} methods, {len(self._wild)} prefixes>"

    def get(self, method: str) -> MethodSpec | None:
        """The spec of ``method`` (exact name first, then its ``prefix/*``), or None."""
        spec = self._exact.get(method)
        if spec is None and self._wild:
            spec = self._wild.get(method[: method.rfind("/") + 1])
        return spec

    def __contains__(self, method: object) -> bool:
        return isinstance(method, str) and self.get(method) is not None

    def __iter__(self) -> Iterator[str]:
        yield from self._exact
        for spec in self._wild.values():
            yield spec.name

    def __len__(self) -> int:
        return len(self._exact) + len(self._wild)

    def specs(self) -> list[MethodSpec]:
        """Every spec, exact names first."""
        return [*self._exact.values(), *self._wild.values()]

    def extended(self, specs: Iterable[MethodSpec]) -> MethodTable:
        """A new table with these specs added (say, a workflow's own MCP servers)."""
        return MethodTable([*self.specs(), *specs])


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
