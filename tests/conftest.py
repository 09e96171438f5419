"""Shared fixtures: both anyio backends, and processes that must not leak."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import hypothesis.internal.conjecture.optimiser  # noqa: F401  (see below)
import pytest
from hypothesis import HealthCheck, settings

from gleitzeit.testing import FakeOllama, RedisServer

from . import blocking_guard

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# Hypothesis imports its optimiser lazily, halfway through a test, while it has
# the recursion limit raised; pytest rewrites a plugin's modules as they load, and
# that rewrite once failed there with CPython 3.11.7's "SystemError: AST
# constructor recursion depth mismatch". The import above does it at collection.
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def no_blocking_on_the_loop() -> Iterator[None]:
    """Fail any test in which gleitzeit's code blocked an event loop (see blocking_guard)."""
    blocking_guard.violations.clear()
    yield from blocking_guard.guard()
    found = list(blocking_guard.violations)
    blocking_guard.violations.clear()
    assert not found, "gleitzeit blocked the event loop:\n" + "\n".join(found)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return str(request.param)


def child_pids() -> set[int]:
    """Process ids whose parent is this process (from /proc)."""
    me = os.getpid()
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.add(int(stat.parent.name))
    return found


def hear_ctrl_c() -> None:
    """``preexec_fn`` for a child the test interrupts: SIGINT at its default.

    A shell starts background jobs with SIGINT ignored, and children inherit
    that; Python then never raises KeyboardInterrupt, and the test would hang.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` (another process changes what it reads) until true or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def alive(pid: int) -> bool:
    """True if a process with this id exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="session")
def ollama_server() -> Iterator[FakeOllama]:
    """One loopback fake Ollama for the whole session (real HTTP on 127.0.0.1)."""
    with FakeOllama() as server:
        yield server


@pytest.fixture
def ollama(ollama_server: FakeOllama) -> Iterator[FakeOllama]:
    """The session's fake Ollama, with its log and faults reset for this test."""
    ollama_server.reset()
    yield ollama_server
    ollama_server.reset()
    ollama_server.latency = ollama_server.chunk_delay = ollama_server.load_delay = 0.0


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server on a free loopback port for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session's redis-server URL, its database emptied after the test."""
    yield redis_server.url
    import redis

    with redis.Redis.from_url(redis_server.url) as conn:
        conn.flushdb()
