"""Providers: what executes a task's method, and the registry that holds them.

A provider declares the methods it serves as
:class:`~gleitzeit.core._methods.MethodSpec`\\ s (``specs``), opens and closes
inside the client's ``async with`` (:meth:`Provider.open` /
:meth:`Provider.aclose`), may check a workflow before it runs
(:meth:`Provider.prepare`), and reports its :meth:`Provider.health`. The engine
hands it a :class:`Call` with the task's substituted params; the provider
returns the result dict or raises a
:class:`~gleitzeit.core.errors.GleitzeitError`. Providers whose calls are cheap
and synchronous (inline python, the built-in MCP tools) also say so through
:meth:`Provider.runs_inline`, and the engine then runs them in batches inside
one scheduler step instead of spawning a coroutine per task.

A client's :class:`ProviderRegistry` is the one place that knows which
provider serves which method: the loader validates against its
:attr:`ProviderRegistry.methods`, the engine dispatches through
:meth:`ProviderRegistry.get`, and ``provider_health()`` reads it. The built-in
providers (python, ollama, built-in tools, MCP servers) are registered like
any other.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from ..core._methods import MethodSpec, MethodTable
from ..core._plan import Plan
from ..core.errors import ConfigurationError, ErrorCode, ProviderError, WorkflowValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from anyio.abc import TaskGroup

    from ..core._models import Workflow

__all__ = ["BaseProvider", "Call", "Provider", "ProviderRegistry", "builtin_methods"]


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
    """The interface the engine and the registry talk to.

    Attributes:
        provider_id: A short unique name (``"python"``, ``"ollama"``, ``"mcp"``).
        specs: The methods served. A ``prefix/*`` spec serves every method
            under that prefix.
        prefixes: Method prefixes routed to this provider even without a spec
            in the registry (methods a workflow declares itself, such as
            ``mcp/<server>/<tool>`` for a workflow's own ``mcp_servers``).
    """

    @property
    def provider_id(self) -> str: ...

    @property
    def specs(self) -> tuple[MethodSpec, ...]: ...

    @property
    def prefixes(self) -> tuple[str, ...]: ...

    async def open(self, task_group: TaskGroup) -> None:
        """Start up inside the client's ``async with``; background tasks go in
        ``task_group``, which ends with the client."""

    async def aclose(self) -> None:
        """Release every resource (processes, connections)."""

    async def prepare(self, workflow: Workflow) -> list[dict[str, Any]]:
        """Check a validated workflow before it runs; returns validation problems
        (dicts with ``task``, ``field`` and ``message``)."""

    async def health(self) -> dict[str, Any]:
        """``provider_id``, ``reachable`` and whatever else says how it is (never raises)."""

    def runs_inline(self, call: Call) -> bool:
        """True if :meth:`run_inline` should run this call on the event loop."""

    def run_inline(self, call: Call) -> dict[str, Any]:
        """Run a call synchronously (only when :meth:`runs_inline` said so)."""

    async def execute(self, call: Call) -> dict[str, Any]:
        """Run a call; cancellation must stop it and release its resources."""


class BaseProvider:
    """Defaults for every :class:`Provider` method but :meth:`execute`.

    Subclass it, set ``provider_id`` and ``specs``, and implement ``execute``.
    """

    provider_id: str = "provider"
    specs: tuple[MethodSpec, ...] = ()
    prefixes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.provider_id!r} methods={len(self.specs)}>"

    async def open(self, task_group: TaskGroup) -> None:
        """Nothing to start."""

    async def aclose(self) -> None:
        """Nothing to release."""

    async def prepare(self, workflow: Workflow) -> list[dict[str, Any]]:
        """No checks beyond the loader's."""
        return []

    async def health(self) -> dict[str, Any]:
        """Always reachable."""
        return {"provider_id": self.provider_id, "reachable": True}

    def runs_inline(self, call: Call) -> bool:
        """Never: calls go through :meth:`execute`."""
        return False

    def run_inline(self, call: Call) -> dict[str, Any]:
        """Not supported unless :meth:`runs_inline` is overridden."""
        raise NotImplementedError(f"{type(self).__name__} runs no call inline")

    async def execute(self, call: Call) -> dict[str, Any]:  # pragma: no cover - abstract
        """Run a call."""
        raise NotImplementedError


class ProviderRegistry:
    """The providers of one client, and which one serves which method.

    Args:
        providers: Registered in this order (health reports keep it).

    Raises:
        ConfigurationError: two providers share an id or a method.
    """

    def __init__(self, providers: Iterable[Provider] = ()) -> None:
        self._providers: dict[str, Provider] = {}
        self._routes: dict[str, Provider] = {}
        self._wild: dict[str, Provider] = {}
        self._prefixes: list[tuple[str, Provider]] = []
        self._table = MethodTable()
        for provider in providers:
            self.register(provider)

    def __repr__(self) -> str:
        return f"<ProviderRegistry {', '.join(self._providers)} ({len(self._table)} methods)>"

    def __iter__(self) -> Iterator[Provider]:
        return iter(list(self._providers.values()))

    def __len__(self) -> int:
        return len(self._providers)

    def register(self, provider: Provider) -> None:
        """Add a provider and its methods.

        Raises:
            ConfigurationError: CONFIGURATION_ERROR when its id or one of its
                methods is taken already.
        """
        pid = provider.provider_id
        if pid in self._providers:
            raise ConfigurationError(
                f"A provider with id {pid!r} is registered already; give each one its own id.",
                data={"provider_id": pid},
            )
        try:
            table = self._table.extended(provider.specs)
        except ValueError as exc:
            raise ConfigurationError(
                f"Provider {pid!r} declares a method another provider serves already ({exc}).",
                data={"provider_id": pid},
            ) from exc
        self._providers[pid] = provider
        self._table = table
        for spec in provider.specs:
            if spec.is_wildcard:
                self._wild[spec.name[:-1]] = provider
            else:
                self._routes[spec.name] = provider
        self._prefixes.extend((prefix, provider) for prefix in provider.prefixes)
        self._prefixes.sort(key=lambda item: -len(item[0]))

    @property
    def methods(self) -> MethodTable:
        """Every method served, for validating workflows."""
        return self._table

    def provider(self, provider_id: str) -> Provider | None:
        """The provider with this id, or None."""
        return self._providers.get(provider_id)

    def get(self, method: str) -> Provider | None:
        """The provider serving ``method``, or None (cheap: the engine's hot path)."""
        provider = self._routes.get(method)
        if provider is None:
            provider = self._route(method)
            if provider is not None:
                self._routes[method] = provider
        return provider

    def _route(self, method: str) -> Provider | None:
        provider = self._wild.get(method[: method.rfind("/") + 1])
        if provider is not None:
            return provider
        for prefix, candidate in self._prefixes:
            if method.startswith(prefix):
                return candidate
        return None

    def provider_for(self, method: str) -> Provider:
        """The provider serving ``method``.

        Raises:
            ProviderError: PROVIDER_NOT_FOUND when none does.
        """
        provider = self.get(method)
        if provider is None:
            raise ProviderError(
                f"No provider handles method {method!r}; known: {', '.join(sorted(self._table))}.",
                ErrorCode.PROVIDER_NOT_FOUND,
                {"provider_id": None, "method": method},
            )
        return provider

    async def open(self, task_group: TaskGroup) -> None:
        """Open every provider (in registration order)."""
        for provider in self._providers.values():
            await provider.open(task_group)

    async def aclose(self) -> None:
        """Close every provider, in reverse order; every one is closed even if one fails."""
        error: BaseException | None = None
        for provider in reversed(list(self._providers.values())):
            try:
                await provider.aclose()
            except Exception as exc:  # close the others first, then report it
                error = error or exc
        if error is not None:
            raise error

    async def prepare(self, workflow: Workflow) -> None:
        """Let every provider whose methods the workflow uses check it.

        Raises:
            WorkflowValidationError: WORKFLOW_VALIDATION_FAILED with every problem found.
        """
        used: dict[str, Provider] = {}
        tasks = workflow.tasks
        # A plan has its methods in a column: no Task object is made here.
        methods = tasks.methods if isinstance(tasks, Plan) else [t.method for t in tasks]
        for method in dict.fromkeys(methods):
            provider = self.get(method)
            if provider is not None:
                used[provider.provider_id] = provider
        template = workflow.template
        if template is not None and isinstance(template.get("method"), str):
            provider = self.get(template["method"])
            if provider is not None:
                used[provider.provider_id] = provider
        problems: list[dict[str, Any]] = []
        for provider in used.values():
            problems.extend(await provider.prepare(workflow))
        if problems:
            raise validation_error(workflow.name, problems)

    async def health(self) -> list[dict[str, Any]]:
        """Every provider's health, in registration order."""
        return [await provider.health() for provider in self._providers.values()]


def validation_error(name: str | None, problems: list[dict[str, Any]]) -> WorkflowValidationError:
    """A WORKFLOW_VALIDATION_FAILED error listing ``problems`` (as the loader's)."""
    lines = []
    for p in problems[:20]:
        where = []
        if p.get("task") is not None:
            where.append(f"task {p['task']!r}")
        if p.get("field") is not None:
            where.append(f"field {p['field']!r}")
        lines.append(f"  - {', '.join(where) + ': ' if where else ''}{p['message']}")
    if len(problems) > 20:
        lines.append(f"  ... and {len(problems) - 20} more (see e.data['problems'])")
    count = len(problems)
    what = f"Workflow {name!r}" if name else "The workflow"
    return WorkflowValidationError(
        f"{what} has {count} problem{'s' if count != 1 else ''}; fix "
        f"{'them' if count != 1 else 'it'} and load it again:\n" + "\n".join(lines),
        data={"problems": problems, "workflow": name, "source": None},
    )


@functools.cache
def builtin_methods() -> MethodTable:
    """The methods of the built-in providers (python, ollama, built-in tools):
    what :func:`gleitzeit.load_workflow` validates against without a client."""
    from .batch import BATCH_SPECS
    from .builtin import BUILTIN_SPECS
    from .ollama import OLLAMA_SPECS
    from .python import PYTHON_SPECS

    return MethodTable([*PYTHON_SPECS, *OLLAMA_SPECS, *BUILTIN_SPECS, *BATCH_SPECS])
