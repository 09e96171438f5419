"""Providers: what executes a task's method.

A provider implements :class:`Provider`. The engine hands it a :class:`Call`
with the task's substituted params; the provider returns the result dict or
raises a :class:`~gleitzeit.core.errors.GleitzeitError`. Providers whose calls
are cheap and synchronous (inline python, the built-in MCP tools) also say so
through :meth:`Provider.runs_inline`, and the engine then runs them in batches
inside one scheduler step instead of spawning a coroutine per task.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

__all__ = ["Call", "Provider"]


@attrs.define(kw_only=True)
class Call:
    """One attempt at one task, as a provider sees it.

    (Not frozen: one is made per attempt on the hot path, and a plain init is
    several times cheaper. Providers must not change it.)
    """

    method: str
    params: dict[str, Any]
    task_id: str = "call"
    workflow_id: str | None = None
    timeout: float | None = None
    isolation: str = "process"
    source_dir: str | None = None


class Provider(Protocol):
    """The interface the engine talks to."""

    provider_id: str
    methods: frozenset[str]

    async def aclose(self) -> None:
        """Release every resource (processes, connections)."""

    def runs_inline(self, call: Call) -> bool:
        """True if :meth:`run_inline` should run this call on the event loop."""

    def run_inline(self, call: Call) -> dict[str, Any]:
        """Run a call synchronously (only when :meth:`runs_inline` said so)."""

    async def execute(self, call: Call) -> dict[str, Any]:
        """Run a call; cancellation must stop it and release its resources."""
