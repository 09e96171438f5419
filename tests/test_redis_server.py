"""gleitzeit.testing.RedisServer: a real redis-server for tests."""

from __future__ import annotations

import pytest
import redis

from gleitzeit.core.errors import ConfigurationError, ErrorCode
from gleitzeit.testing import RedisServer
from gleitzeit.testing._redis_server import _ping


def test_starts_answers_and_stops() -> None:
    """The server answers at its URL while the block runs, and is gone after it."""
    with RedisServer() as server:
        assert server.port is not None
        port = server.port
        assert "running" in repr(server)
        with redis.Redis.from_url(server.url) as conn:
            conn.set("k", "v")
            assert conn.get("k") == b"v"
            # No snapshots, no append-only file.
            assert conn.config_get("save")["save"] == ""
            assert conn.config_get("appendonly")["appendonly"] == "no"
    assert not _ping(port)
    assert "stopped" in repr(server)


def test_two_servers_get_two_ports() -> None:
    """Servers started side by side do not share a port."""
    with RedisServer() as one, RedisServer() as two:
        assert one.port != two.port
        assert _ping(one.port or 0)
        assert _ping(two.port or 0)


def test_missing_binary_is_a_configuration_error() -> None:
    """Without the binary the error says what to install."""
    with pytest.raises(ConfigurationError) as info:
        RedisServer(binary="no-such-redis-server-binary").start()
    assert "apt-get install redis-server" in str(info.value)
    assert info.value.code is ErrorCode.CONFIGURATION_ERROR


def test_url_before_start_says_how_to_use_it() -> None:
    """Asking an unstarted server for its URL explains the with block."""
    with pytest.raises(ConfigurationError) as info:
        _ = RedisServer().url
    assert "with RedisServer()" in str(info.value)
