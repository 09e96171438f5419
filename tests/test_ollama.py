"""The Ollama provider over real HTTP against the loopback fake (trio and asyncio)."""

from __future__ import annotations

import base64
import socket
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from gleitzeit import GleitzeitClient
from gleitzeit.core.errors import ErrorCode, ProviderError, TaskError
from gleitzeit.testing import FakeOllama

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def client(url: str, **options: Any) -> GleitzeitClient:
    c = GleitzeitClient(persistence="memory", ollama_url=url, isolation="inline", **options)
    c._ollama.retry_delay = 0.01  # keep retry tests fast
    return c


def chat_task(name: str, **params: Any) -> dict[str, Any]:
    return {"name": name, "method": "llm/chat", "params": params}


def posts(ollama: FakeOllama) -> list[Any]:
    return [r for r in ollama.requests if r.method == "POST"]


async def test_reply_flows_into_python_and_options_reach_ollama(ollama: FakeOllama) -> None:
    """`${ask.response}` carries the reply into code; temperature/max_tokens/options arrive."""
    wf = {
        "name": "flow",
        "tasks": [
            chat_task(
                "ask",
                model="llama3.2",
                prompt="Why is the sky blue?",
                system="Be brief.",
                temperature=0.1,
                max_tokens=50,
                options={"seed": 7, "num_ctx": 4096},
            ),
            {
                "name": "use",
                "method": "python/execute",
                "params": {"code": "text = '''${ask.response}'''\nresult = text.upper()"},
            },
        ],
    }
    async with client(ollama.url) as c:
        results = await c.run_workflow(wf)
    expected = FakeOllama.reply_for("llama3.2", "Why is the sky blue?")
    assert results["ask"]["response"] == results["ask"]["content"] == expected
    assert results["ask"]["done_reason"] == "stop"
    assert results["ask"]["eval_count"] == len(expected.split(" "))
    assert results["use"]["result"] == expected.upper()
    (sent,) = posts(ollama)
    assert sent.path == "/api/chat"
    assert sent.body["stream"] is True
    assert sent.body["options"] == {
        "seed": 7,
        "num_ctx": 4096,
        "temperature": 0.1,
        "num_predict": 50,
    }
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why is the sky blue?"},
    ]


async def test_generate_and_client_chat(ollama: FakeOllama) -> None:
    """llm/generate uses /api/generate; client.chat returns the reply text."""
    async with client(ollama.url) as c:
        results = await c.run_workflow(
            {
                "name": "g",
                "tasks": [
                    {
                        "name": "g",
                        "method": "llm/generate",
                        "params": {"model": "llama3.2", "prompt": "Once", "system": "Poet."},
                    }
                ],
            }
        )
        text = await c.chat(
            "Explain workflow orchestration in 2 sentences", model="llama3.2:latest"
        )
    assert results["g"]["response"] == FakeOllama.reply_for("llama3.2", "Once")
    assert text == FakeOllama.reply_for("llama3.2", "Explain workflow orchestration in 2 sentences")
    assert posts(ollama)[0].body["system"] == "Poet."
    assert posts(ollama)[1].body["options"] == {"temperature": 0.7}


async def test_images_arrive_base64_all_of_them(ollama: FakeOllama, tmp_path: Path) -> None:
    """Paths are read and sent as bare base64, already-base64 passes through, all are sent."""
    (tmp_path / "a.png").write_bytes(PNG)
    encoded = base64.b64encode(PNG + b"x").decode()
    async with client(ollama.url) as c:
        results = await c.run_workflow(
            {
                "name": "v",
                "tasks": [
                    {
                        "name": "see",
                        "method": "llm/vision",
                        "params": {
                            "model": "llava",
                            "prompt": "What is here?",
                            "images": [str(tmp_path / "a.png"), f"data:image/png;base64,{encoded}"],
                        },
                    }
                ],
            }
        )
        described = await c.vision(str(tmp_path / "a.png"))
    assert results["see"]["response"].endswith("I see 2 images.")
    images = posts(ollama)[0].body["messages"][-1]["images"]
    assert images == [base64.b64encode(PNG).decode(), encoded]
    assert described == FakeOllama.reply_for("llava", "Describe this image", 1)


async def test_bad_inputs_fail_before_any_request(ollama: FakeOllama, tmp_path: Path) -> None:
    """A missing or binary file, or a missing image, fails the task with no request."""
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02")
    cases = [
        chat_task("t", prompt="x", file_path=str(tmp_path / "missing.txt")),
        chat_task("t", prompt="x", files=[str(tmp_path / "bin.dat")]),
        {"name": "t", "method": "llm/vision", "params": {"image_path": "nope/missing.png"}},
    ]
    async with client(ollama.url) as c:
        for task in cases:
            with pytest.raises(TaskError) as info:
                await c.run_workflow({"name": "bad", "tasks": [task]})
            assert info.value.code == ErrorCode.TASK_VALIDATION_FAILED
    assert posts(ollama) == []


async def test_text_files_are_appended_to_the_prompt(ollama: FakeOllama, tmp_path: Path) -> None:
    """file_path content goes under a line naming the file, in the last user message."""
    (tmp_path / "notes.txt").write_text("meeting at noon", encoding="utf-8")
    (tmp_path / "wf.yaml").write_text(
        "name: f\ntasks:\n  - name: s\n    method: llm/chat\n"
        "    params: {prompt: Summarize, file_path: notes.txt}\n",
        encoding="utf-8",
    )
    async with client(ollama.url) as c:
        await c.run_workflow(tmp_path / "wf.yaml")
    content = posts(ollama)[0].body["messages"][-1]["content"]
    assert content == "Summarize\n\nFile content from notes.txt:\nmeeting at noon"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_dead_ollama_is_provider_not_available() -> None:
    """Connection refused: PROVIDER_NOT_AVAILABLE with provider_id and url, also in a task."""
    url = f"http://127.0.0.1:{_dead_port()}"
    async with client(url) as c:
        with pytest.raises(ProviderError) as info:
            await c.chat("hello")
        assert info.value.code == ErrorCode.PROVIDER_NOT_AVAILABLE
        assert info.value.data["provider_id"] == "ollama"
        assert info.value.data["url"] == url
        assert "ollama serve" in info.value.message
        with pytest.raises(ProviderError) as info:
            await c.run_workflow({"name": "w", "tasks": [chat_task("ask", prompt="x")]})
        assert info.value.data["task_id"] == "ask"
        health = {h["provider_id"]: h for h in await c.provider_health()}
    assert health["ollama"]["reachable"] is False


async def test_unknown_model_says_pull_it(ollama: FakeOllama) -> None:
    """A 404 names the model and suggests `ollama pull`; it is not retried."""
    async with client(ollama.url) as c:
        with pytest.raises(ProviderError) as info:
            await c.chat("x", model="mistral:7b")
    assert "ollama pull mistral:7b" in info.value.message
    assert info.value.code == ErrorCode.INVALID_PARAMS
    assert len(posts(ollama)) == 1


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("503", ErrorCode.PROVIDER_OVERLOADED),
        ("drop", ErrorCode.PROVIDER_UNHEALTHY),
        ("500", ErrorCode.PROVIDER_UNHEALTHY),
    ],
)
async def test_transient_faults_are_retried_then_reported(
    ollama: FakeOllama, fault: str, code: ErrorCode
) -> None:
    """A short storm is ridden out by retries; a long one gives the documented error."""

    def inject(n: int) -> None:
        if fault == "drop":
            ollama.drop_next(n)
        else:
            ollama.fail_next(n, int(fault), "boom")

    async with client(ollama.url) as c:
        inject(2)
        assert (await c.chat("storm")).startswith("Reply")
        assert len(posts(ollama)) == 3
        ollama.reset()
        inject(100)
        with pytest.raises(ProviderError) as info:
            await c.chat("storm")
        assert info.value.code == code
        assert len(posts(ollama)) == c._ollama.retries + 1


async def test_mid_stream_error_is_a_failure(ollama: FakeOllama) -> None:
    """An in-band {"error"} after a 200 fails the call (retried once here, then fine)."""
    async with client(ollama.url) as c:
        c._ollama.retries = 0
        ollama.error_after(2)
        with pytest.raises(ProviderError) as info:
            await c.chat("one two three four")
        assert info.value.code == ErrorCode.PROVIDER_UNHEALTHY
        assert "while generating" in info.value.message
        c._ollama.retries = 1
        ollama.error_after(1)
        assert (await c.chat("again")).startswith("Reply")


async def test_read_timeout_is_provider_timeout(ollama: FakeOllama) -> None:
    """A server that says nothing for too long gives PROVIDER_TIMEOUT promptly."""
    ollama.latency = 2.0
    async with client(ollama.url) as c:
        c._ollama.read_timeout = 0.2
        with pytest.raises(ProviderError) as info:
            await c.chat("slow")
    assert info.value.code == ErrorCode.PROVIDER_TIMEOUT


async def test_in_flight_bound_holds_under_a_fan_out() -> None:
    """200 parallel llm tasks never put more than the bound in flight at the server."""
    tasks = [chat_task(f"q{i}", prompt=f"question {i}") for i in range(200)]
    with FakeOllama(latency=0.01) as ollama:  # its own server: nothing else in flight
        async with client(ollama.url, ollama_max_in_flight=4, max_concurrent=200) as c:
            results = await c.run_workflow({"name": "fan", "tasks": tasks})
    assert len(results) == 200
    assert results["q7"]["response"] == FakeOllama.reply_for("llama3.2", "question 7")
    assert 2 <= ollama.max_in_flight <= 4


async def test_cancel_closes_the_stream(ollama: FakeOllama) -> None:
    """Cancelling a workflow mid-generation closes the stream; the server sees it go."""
    ollama.chunk_delay = 0.1
    async with client(ollama.url) as c:
        wf = await c.run_workflow_async(
            {"name": "c", "tasks": [chat_task("long", prompt=" ".join(["word"] * 30))]}
        )
        with anyio.fail_after(10):
            while ollama.max_in_flight == 0:  # noqa: ASYNC110 - the server is another thread
                await anyio.sleep(0.01)
        assert await c.cancel_workflow(wf.id)
    with anyio.fail_after(10):
        while ollama.cancelled_generations == 0:  # noqa: ASYNC110 - another thread
            await anyio.sleep(0.02)
    assert ollama.in_flight == 0


async def test_health_reports_version_and_models(ollama: FakeOllama) -> None:
    """provider_health() says reachable, the version and the installed models."""
    async with client(ollama.url) as c:
        health = {h["provider_id"]: h for h in await c.provider_health()}
    assert health["ollama"]["reachable"] is True
    assert health["ollama"]["version"] == "0.12.3"
    assert "llava:latest" in health["ollama"]["models"]
