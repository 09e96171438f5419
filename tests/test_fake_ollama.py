"""The fake Ollama speaks the real API: the official `ollama` client proves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ollama as official
import pytest

from gleitzeit.testing import FakeOllama

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(ollama: FakeOllama) -> AsyncIterator[official.AsyncClient]:
    """The official async client, pointed at the fake and closed afterwards."""
    client = official.AsyncClient(host=ollama.url)
    try:
        yield client
    finally:
        await client.close()


async def test_official_async_client_chat_generate_and_lists(
    ollama: FakeOllama, client: official.AsyncClient
) -> None:
    """Chat (streamed and not), generate, list and show all parse in the official client."""
    messages = [{"role": "user", "content": "hello there"}]
    expected = FakeOllama.reply_for("llama3.2", "hello there")
    reply = await client.chat(model="llama3.2", messages=messages)
    assert reply.message.content == expected
    assert reply.done_reason == "stop"
    assert reply.eval_count == len(expected.split(" "))
    streamed = [
        part async for part in await client.chat(model="llama3.2", messages=messages, stream=True)
    ]
    assert "".join(p.message.content or "" for p in streamed) == expected
    assert streamed[-1].done
    assert streamed[-1].total_duration is not None
    assert len(streamed) > 2
    generated = await client.generate(model="llama3.2", prompt="hello there")
    assert generated.response == FakeOllama.reply_for("llama3.2", "hello there")
    models = await client.list()
    assert {m.model for m in models.models} == {"llama3.2:latest", "llava:latest"}
    shown = await client.show("llava")
    assert shown.capabilities is not None
    assert "vision" in shown.capabilities
    sent = ollama.requests[0]
    assert sent.body["stream"] is False  # the official client always sends `stream`


# The official client raises out of httpx's line iterator without closing it; trio
# reports that generator when it is collected. It is the client's, not the fake's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_official_client_sees_errors_as_ollama_reports_them(
    ollama: FakeOllama, client: official.AsyncClient
) -> None:
    """404 is ResponseError(404); an in-band error is ResponseError(-1); images are base64."""
    with pytest.raises(official.ResponseError) as info:
        await client.chat(model="missing-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404
    assert "not found" in info.value.error
    ollama.error_after(2)
    with pytest.raises(official.ResponseError) as info:
        async for _ in await client.chat(
            model="llama3.2", stream=True, messages=[{"role": "user", "content": "a b c d"}]
        ):
            pass
    assert info.value.status_code == -1
    ollama.fail_next(1, 503)
    with pytest.raises(official.ResponseError) as info:
        await client.generate(model="llama3.2", prompt="x")
    assert info.value.status_code == 503
    reply = await client.chat(
        model="llava",
        messages=[{"role": "user", "content": "what is it", "images": [b"\x89PNG fake bytes"]}],
    )
    assert reply.message.content == FakeOllama.reply_for("llava", "what is it", 1)


def test_official_sync_client() -> None:
    """The official blocking client works against it too (its own server here)."""
    with FakeOllama(chunk_delay=0.001) as server:
        client = official.Client(host=server.url)
        parts = list(client.generate(model="llama3.2", prompt="sync", stream=True))
        assert "".join(p.response or "" for p in parts) == FakeOllama.reply_for("llama3.2", "sync")
        assert client.ps().models == []
        client.close()
