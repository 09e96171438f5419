"""Work sharing on a real redis-server: several processes run one workflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from gleitzeit import GleitzeitClient, WorkflowStatus
from gleitzeit.core._events import Event, EventKind
from gleitzeit.core.errors import ConfigurationError, WorkflowError

from .strategies import dags

if TYPE_CHECKING:
    from pathlib import Path

    from gleitzeit._stores import StoredRun

pytestmark = pytest.mark.anyio


def _shared_deps(i: int) -> list[int]:
    """The dependencies of task ``i`` in shared_dag: up to two earlier tasks."""
    return sorted({(i * 7) % i, (i * 13 + 5) % i} if i > 2 else set())


def dag_doc(
    deps: list[list[int]], log: Path, sleep: float = 0.01, name: str = "random dag"
) -> dict[str, Any]:
    """Inline tasks over ``deps``: each logs its run and sums its dependencies + 1."""
    tasks = []
    for i, needs in enumerate(deps):
        refs = " + ".join(f"${{t{d}.result}}" for d in needs) or "0"
        code = (
            "import os, time\n"
            f"with open({str(log)!r}, 'a') as f:\n"
            f"    f.write('t{i} %d\\n' % os.getpid())\n"
            f"time.sleep({sleep})\n"
            f"result = {refs} + 1\n"
        )
        tasks.append(
            {
                "name": f"t{i}",
                "method": "python/execute",
                "isolation": "inline",
                "params": {"code": code},
                "dependencies": [f"t{d}" for d in needs],
            }
        )
    return {"name": name, "tasks": tasks}


def shared_dag(n: int, log: Path, sleep: float = 0.005, name: str = "shared") -> dict[str, Any]:
    """``n`` inline tasks, each depending on up to two earlier ones; each logs its run."""
    return dag_doc([_shared_deps(i) for i in range(n)], log, sleep, name)


def expected_results(n: int) -> dict[str, int]:
    """What shared_dag's tasks compute, by a plain loop."""
    values: dict[int, int] = {}
    for i in range(n):
        values[i] = sum(values[d] for d in _shared_deps(i)) + 1
    return {f"t{i}": v for i, v in values.items()}


def start_worker(url: str, prefix_env: dict[str, str], *options: str) -> subprocess.Popen[bytes]:
    """A ``gleitzeit --persistence redis --redis-url URL worker [OPTIONS]`` process."""
    command = [sys.executable, "-m", "gleitzeit", "--persistence", "redis", "--redis-url", url]
    proc = subprocess.Popen(
        [*command, "worker", *options],
        env={**os.environ, **prefix_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    ready = proc.stderr.readline()  # the worker says when it serves
    assert b"serving" in ready, ready + proc.stderr.read()
    return proc


def runs_of(log: Path) -> Counter[str]:
    """How often each task ran, from the log."""
    if not log.exists():
        return Counter()
    return Counter(line.split()[0] for line in log.read_text().splitlines() if line)


def pids_of(log: Path) -> Counter[int]:
    """How many task runs each process did."""
    return Counter(int(line.split()[1]) for line in log.read_text().splitlines() if line)


def completions_recorded(url: str, workflow_id: str) -> Counter[int]:
    """Completions recorded in the run's outcome stream, per task index."""
    with redis.Redis.from_url(url) as conn:
        entries = conn.xrange(f"gleitzeit:wf:{workflow_id}:out")
    return Counter(
        int(i)
        for _, f in entries
        if f[b"k"] == b"b"  # a batch: ``s`` says c(ompleted)/f(ailed) per index in ``i``
        for kind, i in zip(f[b"s"].decode(), f[b"i"].split(b","), strict=True)
        if kind == "c"
    )


def assert_started_after_dependencies(stored: StoredRun, doc: dict[str, Any]) -> None:
    """Each task started after its dependencies finished, by the recorded times."""
    times = stored.task_times
    assert len(times) == len(doc["tasks"])
    for task in doc["tasks"]:
        (mine,) = times[task["name"]]
        for dep in task["dependencies"]:
            (theirs,) = times[dep]
            assert theirs.end is not None
            assert mine.start >= theirs.end, (task["name"], dep)


async def wait_for(condition: Any, timeout: float = 60.0) -> None:
    """Wait (polling) until ``condition()`` is true."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - other processes change what it reads
            await anyio.sleep(0.01)


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM a worker and return its exit code (its stderr goes to ours)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode not in (0, -signal.SIGKILL):
        sys.stderr.write(err.decode(errors="replace"))
    return proc.returncode


async def test_workers_share_a_run_and_each_task_runs_once(redis_url: str, tmp_path: Path) -> None:
    """Client + two workers: 200 tasks, every one run exactly once, by several processes."""
    log = tmp_path / "runs.log"
    n = 200
    workers = [start_worker(redis_url, {}) for _ in range(2)]
    try:
        async with GleitzeitClient(persistence="redis", redis_url=redis_url) as client:
            doc = shared_dag(n, log)
            results = await client.run_workflow(doc)
            (wf,) = await client.list_workflows()
            stored = await client._store.load(wf.id)
        assert stored is not None
        assert_started_after_dependencies(stored, doc)
        assert {k: v["result"] for k, v in results.items()} == expected_results(n)
        runs = runs_of(log)
        assert len(runs) == n
        assert set(runs.values()) == {1}, [t for t, c in runs.items() if c > 1]
        assert set(completions_recorded(redis_url, wf.id).values()) == {1}
        assert len(completions_recorded(redis_url, wf.id)) == n
        assert len(pids_of(log)) >= 2, pids_of(log)
    finally:
        codes = [stop(w) for w in workers]
    assert codes == [0, 0]


async def test_listeners_hear_every_task_start_and_outcome(redis_url: str, tmp_path: Path) -> None:
    """on_event in the submitting client hears each task start, then end, once —
    tasks a worker ran included (their starts come with their outcomes)."""
    log = tmp_path / "runs.log"
    n = 100
    heard: list[Event] = []
    worker = start_worker(redis_url, {})
    try:
        async with GleitzeitClient(
            persistence="redis", redis_url=redis_url, on_event=heard.extend
        ) as client:
            await client.run_workflow(shared_dag(n, log))
    finally:
        assert stop(worker) == 0
    assert pids_of(log)[worker.pid] >= 1
    starts = [str(e.task_id) for e in heard if e.kind is EventKind.TASK_STARTED]
    ends = [str(e.task_id) for e in heard if e.kind is EventKind.TASK_COMPLETED]
    assert sorted(starts) == sorted(ends) == sorted(f"t{i}" for i in range(n)), len(starts)
    order = {(e.kind, e.task_id): k for k, e in enumerate(heard)}
    for tid in ends:
        assert order[EventKind.TASK_STARTED, tid] < order[EventKind.TASK_COMPLETED, tid]
    for e in heard:
        if e.kind is EventKind.TASK_COMPLETED:
            assert e.attempt == 1
            assert e.started_at is not None
            assert e.started_at <= e.at


async def test_killed_worker_tasks_are_reclaimed(redis_url: str, tmp_path: Path) -> None:
    """Three workers share a 500-task DAG; one is killed with SIGKILL mid-run.

    The run completes with the results of a single-process run, every
    completion is recorded exactly once, and each task started after its
    dependencies finished.
    """
    log = tmp_path / "runs.log"
    n = 500
    victim = start_worker(redis_url, {})
    others = [start_worker(redis_url, {}) for _ in range(2)]
    try:
        async with GleitzeitClient(persistence="redis", redis_url=redis_url) as client:
            doc = shared_dag(n, log, sleep=0.01)
            wf = await client.run_workflow_async(doc)
            await wait_for(lambda: log.exists() and pids_of(log)[victim.pid] >= 5)
            victim.kill()
            victim.wait()
            results = await client.wait_for_workflow(wf.id, timeout=120)
            stored = await client._store.load(wf.id)
        assert {k: v["result"] for k, v in results.items()} == expected_results(n)
        runs = runs_of(log)
        assert len(runs) == n
        recorded = completions_recorded(redis_url, wf.id)
        assert len(recorded) == n
        assert set(recorded.values()) == {1}
        assert stored is not None
        assert_started_after_dependencies(stored, doc)
        assert len(pids_of(log)) >= 3, pids_of(log)  # the victim and the survivors ran tasks
    finally:
        stop(victim)
        codes = [stop(w) for w in others]
    assert codes == [0, 0]


async def test_sigterm_hands_back_held_tasks(redis_url: str, tmp_path: Path) -> None:
    """A worker stopped with SIGTERM mid-run hands its tasks back; the run completes."""
    log = tmp_path / "runs.log"
    n = 120
    worker = start_worker(redis_url, {})
    async with GleitzeitClient(persistence="redis", redis_url=redis_url) as client:
        wf = await client.run_workflow_async(shared_dag(n, log, sleep=0.02))
        await wait_for(lambda: log.exists() and pids_of(log)[worker.pid] >= 3)
        assert stop(worker) == 0
        results = await client.wait_for_workflow(wf.id, timeout=120)
    assert {k: v["result"] for k, v in results.items()} == expected_results(n)
    assert set(completions_recorded(redis_url, wf.id).values()) == {1}


async def test_cancel_reaches_every_process(redis_url: str, tmp_path: Path) -> None:
    """cancel_workflow in one process cancels the shared run in the others too."""
    log = tmp_path / "runs.log"
    async with (
        GleitzeitClient(persistence="redis", redis_url=redis_url, max_concurrent=2) as one,
        GleitzeitClient(persistence="redis", redis_url=redis_url, max_concurrent=2) as two,
    ):
        wf = await one.run_workflow_async(shared_dag(400, log, sleep=0.01))
        async with anyio.create_task_group() as tg:
            joined: list[BaseException] = []

            async def join() -> None:
                try:
                    await two.resume_workflow(wf.id)
                except WorkflowError as exc:
                    joined.append(exc)

            tg.start_soon(join)
            await wait_for(lambda: log.exists() and len(runs_of(log)) >= 10)
            assert await one.cancel_workflow(wf.id)
        assert len(joined) == 1
        status = await two.get_workflow_status(wf.id)
        assert status is not None
        assert status.status is WorkflowStatus.CANCELLED
    assert len(runs_of(log)) < 400


async def test_resume_joins_a_live_run(redis_url: str, tmp_path: Path) -> None:
    """A second client's resume_workflow joins the run; both get every result."""
    log = tmp_path / "runs.log"
    n = 60
    async with (
        GleitzeitClient(persistence="redis", redis_url=redis_url, max_concurrent=4) as one,
        GleitzeitClient(persistence="redis", redis_url=redis_url, max_concurrent=4) as two,
    ):
        wf = await one.run_workflow_async(shared_dag(n, log))
        await wait_for(lambda: log.exists() and len(runs_of(log)) >= 2)
        joined = await two.resume_workflow(wf.id)
        first = await one.wait_for_workflow(wf.id, timeout=60)
    assert first == joined
    assert {k: v["result"] for k, v in first.items()} == expected_results(n)
    assert set(runs_of(log).values()) == {1}


async def test_worker_joins_a_resumed_run(redis_url: str, tmp_path: Path) -> None:
    """A run cancelled midway, then resumed with a worker beside it: the worker
    learns the tasks done before from the outcome stream, runs its share, and
    the results equal a single-process run's."""
    log = tmp_path / "runs.log"
    n = 200
    async with GleitzeitClient(persistence="redis", redis_url=redis_url, max_concurrent=4) as one:
        wf = await one.run_workflow_async(shared_dag(n, log))
        await wait_for(lambda: log.exists() and len(runs_of(log)) >= 20)
        assert await one.cancel_workflow(wf.id)
        with pytest.raises(WorkflowError):
            await one.wait_for_workflow(wf.id, timeout=60)
    assert len(runs_of(log)) < n
    worker = start_worker(redis_url, {})
    try:
        async with GleitzeitClient(
            persistence="redis", redis_url=redis_url, max_concurrent=4
        ) as two:
            with anyio.fail_after(60):  # a worker blind to the earlier tasks would hold some
                results = await two.resume_workflow(wf.id)
    finally:
        code = stop(worker)
    assert code == 0
    assert {k: v["result"] for k, v in results.items()} == expected_results(n)
    assert len(runs_of(log)) == n
    assert pids_of(log)[worker.pid] >= 1
    assert set(completions_recorded(redis_url, wf.id).values()) == {1}


async def test_run_worker_needs_redis(tmp_path: Path) -> None:
    """run_worker on another store says it needs redis."""
    async with GleitzeitClient(persistence="memory") as client:
        with pytest.raises(ConfigurationError) as info:
            await client.run_worker()
    assert "persistence='redis'" in str(info.value)


def test_worker_exits_zero_on_sigterm(redis_url: str) -> None:
    """An idle worker ends on SIGTERM with exit code 0."""
    proc = start_worker(redis_url, {})
    assert proc.poll() is None
    assert stop(proc) == 0


@settings(max_examples=4)
@given(deps=dags(min_size=10, max_size=40), kill_after=st.integers(0, 8))
def test_random_dag_with_a_killed_worker(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, deps: list[list[int]], kill_after: int
) -> None:
    """Random DAG, two workers, one killed after a random number of its tasks: same results."""
    log = tmp_path_factory.mktemp("dag") / "runs.log"
    values: list[int] = []
    for needs in deps:
        values.append(sum(values[d] for d in needs) + 1)
    victim, other = start_worker(redis_url, {}), start_worker(redis_url, {})

    async def main() -> tuple[dict[str, Any], str]:
        async with GleitzeitClient(
            persistence="redis", redis_url=redis_url, max_concurrent=2
        ) as client:
            wf = await client.run_workflow_async(dag_doc(deps, log))
            with anyio.move_on_after(30):
                await wait_for(
                    lambda: (
                        client._runs.get(wf.id) is None
                        or (log.exists() and pids_of(log)[victim.pid] >= kill_after)
                    )
                )
            victim.kill()
            return await client.wait_for_workflow(wf.id, timeout=120), wf.id

    try:
        results, wid = anyio.run(main, backend="trio")
    finally:
        stop(victim)
        assert stop(other) == 0
    assert [results[f"t{i}"]["result"] for i in range(len(deps))] == values
    recorded = completions_recorded(redis_url, wid)
    assert sorted(recorded) == list(range(len(deps)))
    assert set(recorded.values()) == {1}


def test_worker_on_another_store_exits_with_usage_error(tmp_path: Path) -> None:
    """``gleitzeit worker`` without redis says it needs redis, exit code 2."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gleitzeit",
            "--persistence",
            "sqlite",
            "--db-path",
            str(tmp_path / "g.db"),
            "worker",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert b"persistence='redis'" in proc.stderr


def test_worker_max_concurrent_must_be_positive(redis_url: str) -> None:
    """``gleitzeit worker --max-concurrent 0`` is a usage error naming the option."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gleitzeit",
            "--persistence",
            "redis",
            "--redis-url",
            redis_url,
            "worker",
            "--max-concurrent",
            "0",
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert b"--max-concurrent" in proc.stderr


async def test_an_outcome_recorded_twice_counts_once(redis_url: str) -> None:
    """The complete script refuses an outcome already final and records the rest of its batch.

    The second batch mixes a duplicate with new outcomes (one failed): only the
    new ones are recorded, released and put on the outcome stream.
    """
    from gleitzeit import load_workflow
    from gleitzeit._stores.redis import RedisStore

    wf = load_workflow(
        {
            "name": "twice",
            "tasks": [
                {"name": "a", "method": "python/execute", "params": {"code": "result = 1"}},
                {
                    "name": "b",
                    "method": "python/execute",
                    "params": {"code": "result = 2"},
                    "dependencies": ["a"],
                },
                {"name": "c", "method": "python/execute", "params": {"code": "result = 3"}},
                {
                    "name": "d",
                    "method": "python/execute",
                    "params": {"code": "result = 4"},
                    "dependencies": ["c"],
                },
            ],
        }
    )
    a, b, c, _ = (t.id for t in wf.tasks)
    store = RedisStore(redis_url, prefix="twice")
    await store.open()
    try:
        at = 1000.0
        await store.record(
            [Event(kind=EventKind.WORKFLOW_SUBMITTED, workflow_id=wf.id, at=at, workflow=wf)]
        )
        coord = store.coordinate(wf)
        assert await coord.begin(at) == 1
        flags, claims = await coord.complete([("", 0, a, True, '{"v":1}', at, 1)], free=10)
        assert flags == [1]
        assert sorted(i for _, i in claims) == [0, 1, 2]  # a's entry, c's, and b (released)
        flags, claims = await coord.complete(
            [
                ("", 0, a, True, '{"v":"again"}', at, 2),
                ("", 1, b, False, '{"code":"X","message":"no"}', at + 1, 1),
                ("", 2, c, True, '{"v":3}', at + 2, 1),
            ],
            free=10,
        )
        assert flags == [0, 1, 1]
        assert [i for _, i in claims] == [3]  # d, released by c
        stored = await store.load(wf.id)
        assert stored is not None
        assert stored.results == {a: {"v": 1}, c: {"v": 3}}
        assert stored.errors == {b: {"code": "X", "message": "no"}}
        assert stored.task_status == {a: "completed", b: "failed", c: "completed"}
        assert stored.task_times[c][0].start == at + 2
        assert stored.task_times[a][0].attempt == 1
        with redis.Redis.from_url(redis_url) as conn:
            entries = conn.xrange(f"twice:wf:{wf.id}:out")
        batches = [f for _, f in entries if f[b"k"] == b"b"]
        assert [(f[b"i"], f[b"s"]) for f in batches] == [(b"0", b"c"), (b"1,2", b"fc")]
        assert batches[1][b"p"] == b'[{"code":"X","message":"no"},{"v":3}]'
        assert batches[1][b"a"] == f"{at + 1!r} 1 {at + 2!r} 1".encode()
        await coord.end(cancel=False, hand_back=False)
    finally:
        await store.aclose()


async def test_no_process_runs_more_than_its_max_concurrent(redis_url: str, tmp_path: Path) -> None:
    """Claims go no further than the free slots: with max_concurrent 2 in the client and
    in the worker, no process ever runs more than 2 process-isolated tasks at once
    (the poller and the recording script claim for the same slots)."""
    log = tmp_path / "spans.log"
    code = (
        "import os, time\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write('s %r %d\\n' % (time.time(), os.getppid()))\n"
        "time.sleep(0.03)\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write('e %r %d\\n' % (time.time(), os.getppid()))\n"
        "result = 1\n"
    )
    doc = {
        "name": "bounded",
        "tasks": [
            {"name": f"t{i}", "method": "python/execute", "params": {"code": code}}
            for i in range(40)
        ],
    }
    worker = start_worker(redis_url, {}, "--max-concurrent", "2")
    try:
        async with GleitzeitClient(
            persistence="redis", redis_url=redis_url, max_concurrent=2, isolation="process"
        ) as client:
            results = await client.run_workflow(doc)
        assert len(results) == 40
    finally:
        assert stop(worker) == 0
    events = sorted(
        (float(at), kind, int(ppid))
        for kind, at, ppid in (line.split() for line in log.read_text().splitlines())
    )
    assert sum(1 for e in events if e[1] == "s") == 40
    running: Counter[int] = Counter()
    most: Counter[int] = Counter()
    for _, kind, ppid in events:
        running[ppid] += 1 if kind == "s" else -1
        most[ppid] = max(most[ppid], running[ppid])
    assert max(most.values()) <= 2, most


async def test_an_outcome_this_process_recorded_before_is_applied(redis_url: str) -> None:
    """A script call whose reply was lost (its retry finds the outcome final) still
    completes the task here, with what was recorded: this process skips its own
    entries on the outcome stream, so nothing else would bring it."""
    from gleitzeit import load_workflow
    from gleitzeit._shared import _complete
    from gleitzeit.core._scheduler import COMPLETED

    wf = load_workflow(
        {
            "name": "lost reply",
            "tasks": [{"name": "a", "method": "python/execute", "params": {"code": "result = 1"}}],
        }
    )
    (tid,) = (t.id for t in wf.tasks)
    async with GleitzeitClient(persistence="redis", redis_url=redis_url) as client:
        store, engine = client._store, client._engine
        await store.record(
            [Event(kind=EventKind.WORKFLOW_SUBMITTED, workflow_id=wf.id, at=1.0, workflow=wf)]
        )
        run = engine.prepare(wf)
        coord = store.coordinate(wf)
        assert await coord.begin(1.0) == 1
        run.sched.take(0)
        # The first call's reply is lost: its outcome is recorded, the engine never heard.
        flags, _ = await coord.complete([("", 0, tid, True, '{"v":"first"}', 1.0, 1)], 0)
        assert flags == [1]
        await _complete(engine, run, coord, {}, [(0, {"v": "again"}, None, 1, 1.5)])
        assert run.sched.state[0] == COMPLETED
        assert run.results[tid] == {"v": "first"}
        await coord.end(cancel=False, hand_back=False)
