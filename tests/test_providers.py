"""The provider registry, custom providers, and the built-in MCP tools (trio and asyncio)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from gleitzeit import GleitzeitClient, load_workflow
from gleitzeit._providers import builtin_methods
from gleitzeit.core.errors import (
    ConfigurationError,
    ErrorCode,
    ProviderError,
    TaskError,
    WorkflowError,
)
from gleitzeit.providers import BaseProvider, Call, MethodSpec, MethodTable, ProviderRegistry

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anyio.abc import TaskGroup

    from gleitzeit import Workflow

pytestmark = pytest.mark.anyio


def _no_shouting(params: Mapping[str, Any], source_dir: str | None) -> list[tuple[str, str]]:
    text = params.get("text")
    if isinstance(text, str) and text.isupper():
        return [("params.text", "text must not be all capitals")]
    return []


class Demo(BaseProvider):
    """A custom provider: ``demo/upper`` and everything under ``demo/echo/``."""

    provider_id = "demo"
    specs = (
        MethodSpec("demo/upper", {"text": (str,)}, any_of=(("text",),), check=_no_shouting),
        MethodSpec("demo/echo/*"),
    )

    def __init__(self) -> None:
        self.events: list[str] = []
        self.background_ran = anyio.Event()

    async def open(self, task_group: TaskGroup) -> None:
        self.events.append("open")
        task_group.start_soon(self._background)

    async def _background(self) -> None:
        self.background_ran.set()
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        self.events.append("aclose")

    async def prepare(self, workflow: Workflow) -> list[dict[str, Any]]:
        return [
            {"task": t.id, "field": "method", "message": "demo/echo/forbidden is forbidden"}
            for t in workflow.tasks
            if t.method == "demo/echo/forbidden"
        ]

    async def health(self) -> dict[str, Any]:
        return {"provider_id": self.provider_id, "reachable": True, "events": list(self.events)}

    async def execute(self, call: Call) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()
        if call.method == "demo/upper":
            return {"result": str(call.params["text"]).upper()}
        return {"result": call.method.rsplit("/", 1)[1], "params": call.params}


def demo_client() -> tuple[GleitzeitClient, Demo]:
    demo = Demo()
    return GleitzeitClient(persistence="memory", isolation="inline", providers=[demo]), demo


async def test_custom_provider_runs_through_the_registry() -> None:
    """A registered provider is opened with the client's task group, serves its exact
    and wildcard methods (results feed ${...} as any other), reports health, and is
    closed with the client."""
    client, demo = demo_client()
    async with client:
        await demo.background_ran.wait()
        results = await client.run_workflow(
            {
                "name": "demo",
                "tasks": [
                    {"name": "up", "method": "demo/upper", "params": {"text": "hi"}},
                    {"name": "echo", "method": "demo/echo/x", "params": {"v": "${up.result}"}},
                ],
            }
        )
        health = {h["provider_id"]: h for h in await client.provider_health()}
    assert results["up"] == {"result": "HI"}
    assert results["echo"] == {"result": "x", "params": {"v": "HI"}}
    assert health["demo"] == {"provider_id": "demo", "reachable": True, "events": ["open"]}
    assert {"python", "ollama", "mcp-builtin"} <= set(health)
    assert demo.events == ["open", "aclose"]


async def test_loader_validates_against_the_clients_registry() -> None:
    """Param names and types, the spec's own check hook, and the provider's prepare
    step are all reported; an unknown method lists the known ones, custom included."""
    client, _ = demo_client()
    async with client:
        with pytest.raises(WorkflowError) as info:
            await client.run_workflow(
                {
                    "name": "bad",
                    "tasks": [
                        {"name": "a", "method": "demo/upper", "params": {"txt": "x"}},
                        {"name": "b", "method": "demo/upper", "params": {"text": "LOUD"}},
                        {"name": "c", "method": "demo/uper", "params": {}},
                    ],
                }
            )
        problems = info.value.data["problems"]
        assert info.value.code == ErrorCode.WORKFLOW_VALIDATION_FAILED
        messages = [(p["task"], p["field"], p["message"]) for p in problems]
        assert len(messages) == 4, messages
        assert ("a", "params", "demo/upper needs 'text'") in messages
        assert any(t == "a" and "takes no parameter 'txt'" in m for t, _, m in messages)
        assert ("b", "params.text", "text must not be all capitals") in messages
        unknown = next(m for t, _, m in messages if t == "c")
        assert "did you mean 'demo/upper'" in unknown
        assert "demo/echo/*" in unknown
        assert "llm/chat" in unknown

        with pytest.raises(WorkflowError) as info:
            await client.run_workflow(
                {"name": "p", "tasks": [{"name": "f", "method": "demo/echo/forbidden"}]}
            )
        assert info.value.data["problems"] == [
            {"task": "f", "field": "method", "message": "demo/echo/forbidden is forbidden"}
        ]


def test_load_workflow_without_a_client_knows_only_the_builtins() -> None:
    """The default method table is the built-in providers'; a custom table widens it."""
    doc = {"name": "w", "tasks": [{"name": "a", "method": "demo/upper", "params": {"text": "x"}}]}
    with pytest.raises(WorkflowError) as info:
        load_workflow(doc)
    assert "unknown method 'demo/upper'" in info.value.data["problems"][0]["message"]
    table = builtin_methods().extended(Demo.specs)
    assert load_workflow(doc, methods=table).tasks[0].method == "demo/upper"
    assert set(builtin_methods()) == {
        "python/execute",
        "llm/chat",
        "llm/generate",
        "llm/vision",
        "mcp/tool.echo",
        "mcp/tool.add",
        "mcp/tool.multiply",
        "mcp/tool.concat",
        "batch/collect",
    }


async def test_list_providers_names_each_method_and_its_params() -> None:
    """list_providers() gives every provider in registration order with its methods,
    their descriptions and accepted parameter names (None: the provider checks them)."""
    client, _ = demo_client()
    async with client:
        listing = await client.list_providers()
    ids = [entry["provider_id"] for entry in listing]
    assert ids[0] == "python"
    assert ids[-1] == "demo"
    demo = {m["name"]: m for m in listing[-1]["methods"]}
    assert demo["demo/upper"]["params"] == ["text"]
    assert demo["demo/echo/*"]["params"] is None
    python = {m["name"] for m in listing[0]["methods"]}
    assert "python/execute" in python


def test_sync_client_takes_custom_providers() -> None:
    """The blocking twin accepts `providers=` too, and a clash is a ConfigurationError."""
    from gleitzeit import SyncGleitzeitClient

    with SyncGleitzeitClient(persistence="memory", providers=[Demo()]) as client:
        results = client.run_workflow(
            {"name": "s", "tasks": [{"name": "u", "method": "demo/upper", "params": {"text": "a"}}]}
        )
    assert results == {"u": {"result": "A"}}
    with pytest.raises(ConfigurationError):
        GleitzeitClient(persistence="memory", providers=[Demo(), Demo()])
    assert repr(BaseProvider).endswith("'gleitzeit.providers.BaseProvider'>")


def test_registry_refuses_duplicates() -> None:
    """A second provider with a taken id, or a method served already, is a ConfigurationError."""
    registry = ProviderRegistry([Demo()])
    with pytest.raises(ConfigurationError) as info:
        registry.register(Demo())
    assert info.value.data == {"provider_id": "demo"}

    class Other(Demo):
        provider_id = "other"

    with pytest.raises(ConfigurationError, match="declares a method another provider serves"):
        registry.register(Other())
    assert [p.provider_id for p in registry] == ["demo"]
    with pytest.raises(ValueError, match="declared twice"):
        MethodTable([MethodSpec("x/y"), MethodSpec("x/y")])


def test_registry_routes_exact_then_wildcard_then_prefix() -> None:
    """Exact names win over wildcards; an unknown method is PROVIDER_NOT_FOUND naming the known."""

    class Prefixed(BaseProvider):
        provider_id = "prefixed"
        prefixes = ("demo/",)

    demo, prefixed = Demo(), Prefixed()
    registry = ProviderRegistry([demo, prefixed])
    assert registry.get("demo/upper") is demo
    assert registry.get("demo/echo/anything") is demo
    assert registry.get("demo/other/thing") is prefixed
    assert registry.get("nope/x") is None
    with pytest.raises(ProviderError) as info:
        registry.provider_for("nope/x")
    assert info.value.code == ErrorCode.PROVIDER_NOT_FOUND
    assert "demo/upper" in info.value.message
    assert "ProviderRegistry demo, prefixed" in repr(registry)


# --- the built-in tools ------------------------------------------------------------


async def test_builtin_tools_keep_their_result_keys() -> None:
    """echo, add, multiply and concat return the earlier keys, plus `result` on each."""
    async with GleitzeitClient(persistence="memory") as client:
        results = await client.run_workflow(
            {
                "name": "tools",
                "tasks": [
                    {"name": "echo", "method": "mcp/tool.echo", "params": {"message": "hi"}},
                    {"name": "add", "method": "mcp/tool.add", "params": {"a": 2, "b": 3.5}},
                    {"name": "join", "method": "mcp/tool.add", "params": {"a": "x", "b": "y"}},
                    {
                        "name": "mul",
                        "method": "mcp/tool.multiply",
                        "params": {"arguments": {"a": "${add.result}", "b": 2}},
                    },
                    {
                        "name": "cat",
                        "method": "mcp/tool.concat",
                        "params": {"strings": ["a", 1, "${echo.result}"], "separator": "-"},
                    },
                ],
            }
        )
    assert results["echo"] == {"response": "hi", "result": "hi", "echoed": True, "length": 2}
    assert results["add"] == {"response": "5.5", "result": 5.5, "calculation": "2 + 3.5 = 5.5"}
    assert results["join"] == {"response": "xy", "result": "xy", "calculation": "x + y = xy"}
    assert results["mul"] == {"response": "11.0", "result": 11.0, "calculation": "5.5 * 2 = 11.0"}
    assert results["cat"] == {"response": "a-1-hi", "result": "a-1-hi", "joined": True, "count": 3}


@pytest.mark.parametrize(
    ("method", "value"),
    [("mcp/tool.add", True), ("mcp/tool.multiply", "seven"), ("mcp/tool.multiply", None)],
)
async def test_add_and_multiply_reject_non_numbers(method: str, value: Any) -> None:
    """A bool, a string (multiply) or null reaching add/multiply at run time is INVALID_PARAMS."""
    async with GleitzeitClient(persistence="memory", isolation="inline") as client:
        with pytest.raises(TaskError) as info:
            await client.run_workflow(
                {
                    "name": "bad",
                    "tasks": [
                        {
                            "name": "v",
                            "method": "python/execute",
                            "params": {"code": f"result = {value!r}"},
                        },
                        {"name": "m", "method": method, "params": {"a": "${v.result}", "b": 2}},
                    ],
                }
            )
    assert info.value.code == ErrorCode.INVALID_PARAMS
    assert info.value.data["task_id"] == "m"
    assert info.value.data["parameter"] == "a"
    assert "needs a number for 'a'" in info.value.message


def test_builtin_tools_reject_literal_non_numbers_before_the_run() -> None:
    """A literal bool or string for multiply is a validation problem naming the field."""
    with pytest.raises(WorkflowError) as info:
        load_workflow(
            {
                "name": "bad",
                "tasks": [{"name": "m", "method": "mcp/tool.multiply", "params": {"a": True}}],
            }
        )
    assert info.value.data["problems"][0]["field"] == "params.a"
