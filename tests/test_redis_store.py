"""The redis store on a real redis-server: the battery, the client, the errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import redis

from gleitzeit import GleitzeitClient, SyncGleitzeitClient, WorkflowStatus
from gleitzeit._stores.redis import RedisStore, mask_url
from gleitzeit.core._events import Event, EventKind
from gleitzeit.core.errors import ConfigurationError, ErrorCode, PersistenceError
from gleitzeit.testing import RedisServer, check_store

pytestmark = pytest.mark.anyio

HELLO = Path(__file__).parents[1] / "examples" / "hello.yaml"

CHAIN = {
    "name": "chain",
    "tasks": [
        {
            "name": f"t{i}",
            "method": "python/execute",
            "params": {"code": f"result = {i}" if i == 0 else f"result = ${{t{i - 1}.result}} + 1"},
            "dependencies": [f"t{i - 1}"] if i else [],
        }
        for i in range(5)
    ],
}


async def test_battery(redis_url: str) -> None:
    """The redis store passes the store battery, across reconnecting."""
    await check_store(lambda: RedisStore(redis_url, prefix="battery"), durable=True)


async def test_prefixes_keep_stores_apart(redis_url: str) -> None:
    """Two prefixes on one Redis see only their own workflows; keys carry the prefix."""
    async with GleitzeitClient(
        persistence="redis", redis_url=redis_url, redis_prefix="one", isolation="inline"
    ) as one:
        await one.run_workflow(CHAIN)
        assert len(await one.list_workflows()) == 1
    async with GleitzeitClient(
        persistence="redis", redis_url=redis_url, redis_prefix="two", isolation="inline"
    ) as two:
        assert await two.list_workflows() == []
    with redis.Redis.from_url(redis_url) as conn:
        keys = [k.decode() for k in conn.keys("*")]
    assert keys
    assert all(k.startswith("one:") for k in keys), keys


async def test_state_survives_the_client(redis_url: str) -> None:
    """A new client sees status and results; resume returns them without running again."""
    async with GleitzeitClient(persistence="redis", redis_url=redis_url, isolation="inline") as c:
        results = await c.run_workflow(CHAIN)
        (listed,) = await c.list_workflows()
    assert results["t4"]["result"] == 4
    async with GleitzeitClient(persistence="redis", redis_url=redis_url) as c:
        status = await c.get_workflow_status(listed.id)
        assert status is not None
        assert (status.status, status.completed_tasks, status.total_tasks) == (
            WorkflowStatus.COMPLETED,
            5,
            5,
        )
        assert await c.get_task_result(listed.id, "t4") == results["t4"]
        assert await c.resume_workflow(listed.id) == results


async def test_redis_url_from_environment(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """GLEITZEIT_PERSISTENCE_BACKEND and GLEITZEIT_REDIS_URL select the store."""
    monkeypatch.setenv("GLEITZEIT_PERSISTENCE_BACKEND", "redis")
    monkeypatch.setenv("GLEITZEIT_REDIS_URL", redis_url)
    async with GleitzeitClient(isolation="inline") as c:
        assert c.persistence == "redis"
        await c.run_workflow(CHAIN)
    with redis.Redis.from_url(redis_url) as conn:
        assert conn.zcard("gleitzeit:runs") == 1


def test_sync_client_process_isolation(redis_url: str) -> None:
    """The sync client on redis with process-isolated tasks."""
    with SyncGleitzeitClient(persistence="redis", redis_url=redis_url) as c:
        results = c.run_workflow(CHAIN)
    assert [r["result"] for r in results.values()] == [0, 1, 2, 3, 4]


async def test_finished_runs_are_bounded(redis_url: str) -> None:
    """max_finished_runs drops the oldest finished runs from Redis too."""
    async with GleitzeitClient(
        persistence="redis", redis_url=redis_url, isolation="inline", max_finished_runs=2
    ) as c:
        for _ in range(4):
            await c.run_workflow(CHAIN)
        assert len(await c.list_workflows()) == 2
    with redis.Redis.from_url(redis_url) as conn:
        assert conn.zcard("gleitzeit:runs") == 2
        kept = {k.decode() for k in conn.zrange("gleitzeit:runs", 0, -1)}
        keys = [k.decode() for k in conn.keys("gleitzeit:wf:*")]
        assert {k.split(":")[2] for k in keys} == kept


async def test_unreachable_redis_names_the_url_masked() -> None:
    """A Redis that does not answer fails at start, naming the URL without its password."""
    with RedisServer() as server:
        port = server.port
    url = f"redis://user:hunter2@127.0.0.1:{port}/0"
    with pytest.raises(PersistenceError) as info:
        async with GleitzeitClient(persistence="redis", redis_url=url):
            pass
    err = info.value
    assert err.code is ErrorCode.PERSISTENCE_CONNECTION_FAILED
    assert "hunter2" not in str(err)
    assert "hunter2" not in repr(err.data)
    assert f"redis://user:***@127.0.0.1:{port}/0" in str(err)
    assert "redis-server" in str(err)
    assert err.data["backend"] == "redis"


async def test_wrong_password_has_its_own_code() -> None:
    """A refused password is AUTHENTICATION_FAILED, not a connection failure."""
    with RedisServer(args=("--requirepass", "right")) as server:
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        with pytest.raises(PersistenceError) as info:
            async with GleitzeitClient(persistence="redis", redis_url=url):
                pass
        assert info.value.code is ErrorCode.AUTHENTICATION_FAILED
        assert "wrong" not in str(info.value)
        good = f"redis://:right@127.0.0.1:{server.port}/0"
        async with GleitzeitClient(persistence="redis", redis_url=good, isolation="inline") as c:
            await c.run_workflow(CHAIN)


async def test_redis_lost_mid_run_fails_the_run() -> None:
    """Redis gone for longer than the retry window fails the call with PersistenceError."""
    server = RedisServer().start()
    store = RedisStore(server.url, retry_for=1.0)
    try:
        await store.open()
        server.stop()
        with pytest.raises(PersistenceError) as info:
            await store.record([Event(kind=EventKind.WORKFLOW_STARTED, workflow_id="w", at=1.0)])
        assert info.value.code is ErrorCode.PERSISTENCE_CONNECTION_FAILED
        assert "resume" in str(info.value)
    finally:
        await store.aclose()
        server.stop()


def test_missing_extra_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the redis package, persistence='redis' names gleitzeit[redis]."""
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigurationError) as info:
        GleitzeitClient(persistence="redis")
    assert "gleitzeit[redis]" in str(info.value)
    with pytest.raises(ConfigurationError) as listed:
        GleitzeitClient(persistence="postgres")
    assert "redis (needs gleitzeit[redis])" in str(listed.value)


def test_mask_url() -> None:
    """Passwords are masked; URLs without one are unchanged."""
    assert mask_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("redis://u:pw@h/0") == "redis://u:***@h/0"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert "pw" not in repr(RedisStore("redis://:pw@h:1/0"))


async def test_heartbeat_ttl_is_configurable(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis_heartbeat_ttl (or its variable) sets the heartbeat key's TTL; bad values fail."""
    monkeypatch.setenv("GLEITZEIT_REDIS_HEARTBEAT_TTL", "2")
    async with GleitzeitClient(persistence="redis", redis_url=redis_url, isolation="inline") as c:
        await c.run_workflow(CHAIN)
        with redis.Redis.from_url(redis_url) as conn:
            (key,) = conn.keys("gleitzeit:hb:*")
            assert 0 < conn.pttl(key) <= 2000
    with redis.Redis.from_url(redis_url) as conn:
        assert conn.keys("gleitzeit:hb:*") == []  # deleted when the client closed
    for bad in ("0", "soon", "-1"):
        monkeypatch.setenv("GLEITZEIT_REDIS_HEARTBEAT_TTL", bad)
        with pytest.raises(ConfigurationError) as info:
            GleitzeitClient(persistence="redis", redis_url=redis_url)
        assert info.value.data["option"] == "redis_heartbeat_ttl"
    monkeypatch.delenv("GLEITZEIT_REDIS_HEARTBEAT_TTL")
    assert GleitzeitClient(persistence="redis", redis_heartbeat_ttl=7).redis_heartbeat_ttl == 7


async def test_a_definition_stored_as_task_records_still_loads(redis_url: str) -> None:
    """Definitions are written compact (the plan's columns); one written as task records
    (as before) reads back as the same workflow."""
    import json

    from gleitzeit import load_workflow
    from gleitzeit._serde import unstructure_workflow

    wf = load_workflow(
        {
            "name": "records",
            "tasks": [
                {"name": "a", "method": "python/execute", "params": {"code": "result = 1"}},
                {
                    "name": "b",
                    "method": "python/execute",
                    "params": {"code": "result = ${a.result}"},
                    "timeout": 3,
                },
            ],
        }
    )
    store = RedisStore(redis_url, prefix="records")
    await store.open()
    try:
        await store.record(
            [Event(kind=EventKind.WORKFLOW_SUBMITTED, workflow_id=wf.id, at=1.0, workflow=wf)]
        )
        key = f"records:wf:{wf.id}"
        with redis.Redis.from_url(redis_url) as conn:
            definition = conn.hget(key, "definition")
            assert isinstance(definition, bytes)
            assert b'"plan"' in definition
            conn.hset(key, "definition", json.dumps(unstructure_workflow(wf)))
        stored = await store.load(wf.id)
        assert stored is not None
        assert stored.workflow == wf
        assert stored.workflow.tasks[1].timeout == 3
    finally:
        await store.aclose()
