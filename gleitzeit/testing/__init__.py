"""Helpers for testing code that uses gleitzeit (and gleitzeit itself).

* :func:`check_store` — the battery every store implementation must pass.
* :class:`FakeOllama` — a loopback server that speaks the Ollama HTTP API.
* :class:`RedisServer` — a real ``redis-server`` on a free loopback port.
"""

from __future__ import annotations

from ._check_store import check_store
from ._fake_ollama import FakeOllama, LoggedRequest
from ._redis_server import RedisServer

__all__ = ["FakeOllama", "LoggedRequest", "RedisServer", "check_store"]
