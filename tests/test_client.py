"""End-to-end tests of GleitzeitClient with real python tasks (trio and asyncio)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gleitzeit import GleitzeitClient, TaskStatus, WorkflowStatus
from gleitzeit.core.errors import (
    ConfigurationError,
    ErrorCode,
    GleitzeitError,
    TaskError,
    TaskTimeoutError,
    WorkflowError,
)

from .conftest import alive, child_pids
from .strategies import dag_workflow, dags

pytestmark = pytest.mark.anyio
FIXTURES = Path(__file__).parent / "fixtures"


def client(**options: Any) -> GleitzeitClient:
    options.setdefault("persistence", "memory")
    return GleitzeitClient(**options)


def py(name: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "method": "python/execute", "params": {"code": code}, **extra}


async def test_execute_python_as_in_the_seed() -> None:
    """execute_python(code="import math; result = math.sqrt(16)") gives 4.0."""
    async with client() as c:
        out = await c.execute_python(code="import math; result = math.sqrt(16)", timeout=5)
    assert out["result"] == 4.0
    assert out["success"] is True
    assert set(out) == {"result", "stdout", "stderr", "success", "execution_time"}


async def test_parallel_processing_example_runs(tmp_path: Path) -> None:
    """The seed's parallel example (python part, with provided scripts) runs as written."""
    async with client() as c:
        results = await c.run_workflow(FIXTURES / "parallel_processing.yaml")
    assert list(results) == [
        "Source_A",
        "Source_B",
        "Source_C",
        "Merge_Data",
        "Statistical_Analysis",
        "ML_Prediction",
    ]
    merged = results["Merge_Data"]["result"]
    assert merged["count"] == 9
    assert merged["merged"][:3] == ["a0", "a1", "a2"]
    assert results["ML_Prediction"]["result"]["prediction"] == "stable"


async def test_args_globals_stdout_and_json_results() -> None:
    """args are globals and `args`; output is captured; results are made JSON-safe."""
    code = (
        "import sys\nprint('out', x)\nprint('err', file=sys.stderr)\n"
        "result = {'t': (1, 2), 1: args['x'], 'o': object}"
    )
    async with client() as c:
        out = await c.execute_python(code=code, args={"x": 5})
    assert out["stdout"] == "out 5\n"
    assert out["stderr"] == "err\n"
    assert out["result"]["t"] == [1, 2]
    assert out["result"]["1"] == 5
    assert out["result"]["o"] == repr(object)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("raise ValueError('bad value')", "ValueError"),
        ("import sys; sys.exit(3)", "SystemExit"),
        ("import os; os._exit(5)", "WorkerExited"),
    ],
)
async def test_failing_code_is_task_execution_failed(code: str, kind: str) -> None:
    """An exception, a non-zero exit or a dying worker fail with TASK_EXECUTION_FAILED."""
    async with client() as c:
        with pytest.raises(TaskError) as info:
            await c.execute_python(code=code)
        assert info.value.code == ErrorCode.TASK_EXECUTION_FAILED
        assert info.value.data["error_type"] == kind
        if kind == "ValueError":
            assert "bad value" in info.value.data["traceback"]
        # the pool still works afterwards
        assert (await c.execute_python(code="result = 1"))["result"] == 1


async def test_execute_python_input_errors(tmp_path: Path) -> None:
    """Both or neither of code/file, or a missing file: TASK_VALIDATION_FAILED."""
    async with client() as c:
        cases: list[dict[str, Any]] = [
            {},
            {"code": "1", "file": "x.py"},
            {"file": str(tmp_path / "no.py")},
        ]
        for kwargs in cases:
            with pytest.raises(TaskError) as info:
                await c.execute_python(**kwargs)
            assert info.value.code == ErrorCode.TASK_VALIDATION_FAILED


async def test_runaway_task_is_killed() -> None:
    """A `while True: pass` task times out and its worker process is really gone."""
    async with client(workers=1) as c:
        await c.execute_python(code="result = 1")
        (pid,) = c._python.pool.pids
        with pytest.raises(TaskTimeoutError) as info:
            await c.execute_python(code="while True: pass", timeout=1)
        assert info.value.code == ErrorCode.TASK_TIMEOUT
        assert not alive(pid)
        assert pid not in c._python.pool.pids
        assert (await c.execute_python(code="result = 2"))["result"] == 2


async def test_cancel_leaves_no_stray_process(tmp_path: Path) -> None:
    """Cancelling a workflow kills its workers and their children; exit leaves none."""
    before = child_pids()
    marker = tmp_path / "started"
    code = (
        f"import subprocess, pathlib, time\nsubprocess.Popen(['sleep', '300'])\n"
        f"pathlib.Path({str(marker)!r}).touch()\ntime.sleep(300)"
    )
    async with client(workers=2) as c:
        wf = await c.run_workflow_async(
            {"name": "slow", "tasks": [py("a", code), py("b", "result = 1")]}
        )
        with anyio.fail_after(30):
            while not marker.exists():  # noqa: ASYNC110 - another process makes it
                await anyio.sleep(0.02)
        busy = list(c._python.pool.pids)
        grandchildren = [p for p in _all_pids() if _ppid(p) in busy]
        assert grandchildren, "the task's own child process should exist"
        assert await c.cancel_workflow(wf.id) is True
        status = await c.get_workflow_status(wf.id)
        assert status is not None
        assert status.status is WorkflowStatus.CANCELLED
        assert status.tasks[0].status is TaskStatus.CANCELLED
        with pytest.raises(WorkflowError) as info:
            await c.wait_for_workflow(wf.id)
        assert info.value.code == ErrorCode.WORKFLOW_CANCELLED
        assert not any(alive(p) for p in grandchildren)
    assert not any(alive(p) for p in busy)
    assert child_pids() - before == set()


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


async def test_independent_tasks_overlap(tmp_path: Path) -> None:
    """Two independent tasks run at the same time: each waits to see the other start."""
    code = (
        "import pathlib, time\nd = pathlib.Path(args['dir'])\n"
        "(d / args['me']).touch()\ndeadline = time.time() + 20\n"
        "while not (d / args['other']).exists():\n"
        "    assert time.time() < deadline, 'the other task never started'\n"
        "    time.sleep(0.01)\nresult = 'met'"
    )
    tasks = [
        {
            "name": me,
            "method": "python/execute",
            "params": {"code": code, "args": {"dir": str(tmp_path), "me": me, "other": o}},
        }
        for me, o in (("left", "right"), ("right", "left"))
    ]
    async with client(workers=2) as c:
        results = await c.run_workflow({"name": "overlap", "tasks": tasks})
    assert [r["result"] for r in results.values()] == ["met", "met"]


async def test_failure_skips_dependents_and_raises_with_results() -> None:
    """A failure skips its dependents, lets independent tasks finish and raises."""
    wf = {
        "name": "partial",
        "tasks": [
            py("ok", "result = 1"),
            py("bad", "raise RuntimeError('boom')"),
            py("after_bad", "result = ${bad.result}"),
            py("after_ok", "result = ${ok.result} + 1"),
        ],
    }
    async with client(isolation="inline") as c:
        with pytest.raises(TaskError) as info:
            await c.run_workflow(wf)
        err = info.value
        assert err.code == ErrorCode.TASK_EXECUTION_FAILED
        assert err.data["task_id"] == "bad"
        assert set(err.data["results"]) == {"ok", "after_ok"}
        assert err.data["results"]["after_ok"]["result"] == 2
        status = await c.get_workflow_status(err.data["workflow_id"])
        assert status is not None
        assert [t.status.value for t in status.tasks] == [
            "completed",
            "failed",
            "skipped",
            "completed",
        ]
        assert (status.status, status.completed_tasks, status.failed_tasks) == (
            WorkflowStatus.FAILED,
            2,
            1,
        )


async def test_missing_reference_key_is_parameter_error() -> None:
    """A ${ref} to a missing key fails that task with TASK_PARAMETER_ERROR."""
    wf = {
        "name": "refs",
        "tasks": [py("a", "result = {'x': 1}"), py("b", "result = ${a.result.y}")],
    }
    async with client(isolation="inline") as c:
        with pytest.raises(TaskError) as info:
            await c.run_workflow(wf)
    assert info.value.code == ErrorCode.TASK_PARAMETER_ERROR
    assert "'x'" in info.value.message


async def test_retry_until_success_and_single_attempt_without_policy(tmp_path: Path) -> None:
    """A task with `retry` is attempted again; one without is attempted once."""
    counter = tmp_path / "n"
    code = (
        f"import pathlib\np = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\np.write_text(str(n + 1))\n"
        "assert n >= 2, 'not yet'\nresult = n"
    )
    retry = {"max_attempts": 3, "base_delay": 0.01, "max_delay": 0.02}
    async with client() as c:
        results = await c.run_workflow({"name": "r", "tasks": [py("t", code, retry=retry)]})
        assert results["t"]["result"] == 2
        counter.unlink()
        with pytest.raises(TaskError):
            await c.run_workflow({"name": "r1", "tasks": [py("t", code)]})
        assert counter.read_text() == "1"


async def test_priority_orders_ready_tasks(tmp_path: Path) -> None:
    """With one slot, higher priority runs first and ties keep document order."""
    log = tmp_path / "order"
    code = f"with open({str(log)!r}, 'a') as f: f.write(args['n'] + ' ')"
    tasks = [
        {
            "name": n,
            "method": "python/execute",
            "priority": p,
            "params": {"code": code, "args": {"n": n}},
        }
        for n, p in (("a", "low"), ("b", 0), ("c", "urgent"), ("d", 0), ("e", 1))
    ]
    async with client(max_concurrent=1) as c:
        await c.run_workflow({"name": "prio", "tasks": tasks})
    assert log.read_text().split() == ["c", "e", "b", "d", "a"]


async def test_background_run_wait_timeout_and_status(tmp_path: Path) -> None:
    """run_workflow_async returns at once; a short wait raises WORKFLOW_TIMEOUT and the
    workflow keeps running; waiting again returns the results."""
    gate = tmp_path / "gate"
    code = (
        f"import pathlib, time\nwhile not pathlib.Path({str(gate)!r}).exists(): "
        "time.sleep(0.01)\nresult = 'done'"
    )
    async with client() as c:
        wf = await c.run_workflow_async({"name": "bg", "tasks": [py("wait", code)]})
        assert wf.status in (WorkflowStatus.PENDING, WorkflowStatus.RUNNING)
        with pytest.raises(WorkflowError) as info:
            await c.wait_for_workflow(wf.id, timeout=0.2)
        assert info.value.code == ErrorCode.WORKFLOW_TIMEOUT
        assert await c.get_task_result(wf.id, "wait") is None
        gate.touch()
        results = await c.wait_for_workflow(wf.id, timeout=30)
        assert results["wait"]["result"] == "done"
        assert (await c.get_task_result(wf.id, "wait") or {})["result"] == "done"
        listed = await c.list_workflows()
        assert [w.id for w in listed][:1] == [wf.id]
        assert listed[0].status is WorkflowStatus.COMPLETED


async def test_workflow_timeout_fails_the_run() -> None:
    """A workflow-level timeout cancels unfinished tasks: WORKFLOW_TIMEOUT."""
    wf = {"name": "slow", "timeout": 0.5, "tasks": [py("a", "import time; time.sleep(30)")]}
    async with client() as c:
        with pytest.raises(WorkflowError) as info:
            await c.run_workflow(wf)
        assert info.value.code == ErrorCode.WORKFLOW_TIMEOUT
        status = await c.get_workflow_status(info.value.data["workflow_id"])
        assert status is not None
        assert status.tasks[0].status is TaskStatus.CANCELLED


async def test_relative_file_resolves_against_workflow_folder(tmp_path: Path) -> None:
    """`file` resolves against the workflow file's folder; __file__ is the real path."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "s.py").write_text("result = __file__", encoding="utf-8")
    (tmp_path / "wf.yaml").write_text(
        "name: f\ntasks:\n  - name: s\n    method: python/execute\n"
        "    params: {file: scripts/s.py}\n",
        encoding="utf-8",
    )
    async with client() as c:
        results = await c.run_workflow(str(tmp_path / "wf.yaml"))
    assert results["s"]["result"] == str(tmp_path / "scripts" / "s.py")


async def test_unknown_ids() -> None:
    """Unknown workflow ids: None from status, WORKFLOW_NOT_FOUND from waits."""
    async with client() as c:
        assert await c.get_workflow_status("nope") is None
        with pytest.raises(WorkflowError) as info:
            await c.wait_for_workflow("nope")
        assert info.value.code == ErrorCode.WORKFLOW_NOT_FOUND
        assert await c.cancel_workflow("nope") is False


async def test_lifecycle_misuse() -> None:
    """Using a client outside `async with`, or entering it twice, is a clear error."""
    c = client()
    with pytest.raises(GleitzeitError) as info:
        await c.run_workflow({"name": "x", "tasks": [py("a", "1")]})
    assert info.value.code == ErrorCode.SYSTEM_NOT_INITIALIZED
    async with c:
        pass
    with pytest.raises(GleitzeitError):
        async with c:
            pass


async def test_validation_error_before_anything_runs(tmp_path: Path) -> None:
    """A bad document raises WORKFLOW_VALIDATION_FAILED and nothing runs."""
    marker = tmp_path / "ran"
    wf = {
        "name": "bad",
        "tasks": [py("a", f"open({str(marker)!r}, 'w')"), {"name": "b", "method": "nope"}],
    }
    async with client() as c:
        with pytest.raises(WorkflowError) as info:
            await c.run_workflow(wf)
        assert info.value.code == ErrorCode.WORKFLOW_VALIDATION_FAILED
        assert await c.list_workflows() == []
    assert not marker.exists()


def test_configuration_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit argument > environment variable > default; bad names list the valid ones."""
    monkeypatch.setenv("GLEITZEIT_PERSISTENCE_BACKEND", "memory")
    monkeypatch.setenv("GLEITZEIT_OLLAMA_URL", "http://ollama.test:1")
    assert GleitzeitClient().persistence == "memory"
    assert GleitzeitClient().ollama_url == "http://ollama.test:1"
    assert GleitzeitClient(ollama_url="http://x:2").ollama_url == "http://x:2"
    assert GleitzeitClient(persistence="journal").persistence == "journal"
    with pytest.raises(ConfigurationError) as info:
        GleitzeitClient(persistence="postgres")
    assert info.value.data["valid"] == ["memory", "sqlite", "journal", "redis"]
    monkeypatch.setenv("GLEITZEIT_PERSISTENCE_BACKEND", "mongo")
    with pytest.raises(ConfigurationError, match="GLEITZEIT_PERSISTENCE_BACKEND"):
        GleitzeitClient()
    with pytest.raises(ConfigurationError):
        GleitzeitClient(persistence="memory", isolation="thread")  # type: ignore[arg-type]
    os.environ.pop("GLEITZEIT_LOG_LEVEL", None)


@given(deps=dags(max_size=15), failing=st.sets(st.integers(0, 14), max_size=3))
@settings(max_examples=25)
async def test_run_workflow_property_with_real_code(
    deps: list[list[int]], failing: set[int]
) -> None:
    """Through the public API with real (inline) code: results or the first failure's
    error with exactly the completed results; skipped tasks never ran."""
    failing = {f for f in failing if f < len(deps)}
    doc = dag_workflow(deps)
    for i in failing:
        doc["tasks"][i]["params"]["code"] = f"raise ValueError('task {i}')"
    async with client(isolation="inline") as c:
        if not failing:
            results = await c.run_workflow(doc)
            assert [r["result"] for r in results.values()] == list(range(len(deps)))
            return
        with pytest.raises(TaskError) as info:
            await c.run_workflow(doc)
        status = await c.get_workflow_status(info.value.data["workflow_id"])
    assert status is not None
    done = {t.id for t in status.tasks if t.status is TaskStatus.COMPLETED}
    assert set(info.value.data["results"]) == done
    failed = {t.id for t in status.tasks if t.status is TaskStatus.FAILED}
    assert info.value.data["task_id"] in failed
    assert failed <= {f"t{i}" for i in failing}
    skipped = {t.id for t in status.tasks if t.status is TaskStatus.SKIPPED}
    for t in status.tasks:  # a task is skipped iff one of its dependencies did not complete
        if t.id not in failed:
            assert (t.id in skipped) == any(d not in done for d in t.dependencies), t.id


async def test_resume_after_failure_reruns_only_unfinished(tmp_path: Path) -> None:
    """On the memory store too, resume reuses completed results and reruns the rest."""
    counter = tmp_path / "runs"
    flag = tmp_path / "ok"
    count = (
        f"import pathlib\np = pathlib.Path({str(counter)!r})\n"
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\nresult = 1"
    )
    wf = {
        "name": "resume",
        "tasks": [
            py("once", count),
            py(
                "flaky",
                f"import pathlib\nassert pathlib.Path({str(flag)!r}).exists()\nresult = 2",
                dependencies=["once"],
            ),
        ],
    }
    async with client(isolation="inline") as c:
        with pytest.raises(TaskError) as info:
            await c.run_workflow(wf)
        flag.touch()
        results = await c.resume_workflow(info.value.data["workflow_id"])
    assert results["flaky"]["result"] == 2
    assert counter.read_text() == "x"


async def test_legacy_mcp_workflow_runs_on_the_builtin_tools() -> None:
    """The earlier system's mcp_workflow: echo, add, multiply (a typed ref), concat."""
    async with client() as c:
        results = await c.run_workflow(FIXTURES / "legacy" / "mcp_workflow.yaml")
        with pytest.raises(TaskError) as info:
            await c.run_workflow(
                {
                    "name": "bad",
                    "tasks": [
                        {"name": "s", "method": "mcp/tool.echo", "params": {"message": "x"}},
                        {
                            "name": "m",
                            "method": "mcp/tool.multiply",
                            "params": {"a": "${s.response}", "b": 2},
                        },
                    ],
                }
            )
    assert results["echo"]["response"] == "hello"
    assert results["add"]["result"] == 12
    assert results["multiply"]["result"] == 36
    assert results["concat"]["response"] == "hello | 36"
    assert info.value.code == ErrorCode.INVALID_PARAMS


@pytest.mark.parametrize("persistence", ["memory", "sqlite", "journal"])
async def test_submit_stores_pending_and_resume_runs_it(tmp_path: Path, persistence: str) -> None:
    """submit_workflow validates and stores a workflow `pending` without running it;
    resume_workflow (from a later client on a durable store) runs it; an invalid
    workflow is refused before anything is stored."""
    path = tmp_path / "runs.db"
    doc = {
        "name": "later",
        "tasks": [py("a", "result = 2"), py("b", "result = ${a.result} + 1", dependencies=["a"])],
    }
    async with client(persistence=persistence, db_path=path) as c:
        wf = await c.submit_workflow(doc)
        assert wf.status is WorkflowStatus.PENDING
        status = await c.get_workflow_status(wf.id)
        assert status is not None
        assert status.status is WorkflowStatus.PENDING
        assert [t.status for t in status.tasks] == [TaskStatus.PENDING] * 2
        assert await c.get_task_result(wf.id, "a") is None
        with pytest.raises(WorkflowError) as info:
            await c.submit_workflow({"name": "bad", "tasks": [py("x", "1", dependencies=["y"])]})
        assert info.value.code == ErrorCode.WORKFLOW_VALIDATION_FAILED
        assert [w.name for w in await c.list_workflows()] == ["later"]
        if persistence == "memory":  # nothing outlives this client
            results = await c.resume_workflow(wf.id)
            assert {k: v["result"] for k, v in results.items()} == {"a": 2, "b": 3}
            return
    async with client(persistence=persistence, db_path=path) as c:
        results = await c.resume_workflow(wf.id)
        status = await c.get_workflow_status(wf.id)
    assert {k: v["result"] for k, v in results.items()} == {"a": 2, "b": 3}
    assert status is not None
    assert status.status is WorkflowStatus.COMPLETED


@pytest.mark.parametrize("persistence", ["memory", "sqlite"])
async def test_cancel_a_submitted_workflow(tmp_path: Path, persistence: str) -> None:
    """Cancelling a stored pending workflow marks it and its tasks cancelled; it can
    still be resumed; cancelling it again, or an unknown id, returns False."""
    path = tmp_path / "runs.db"
    async with client(persistence=persistence, db_path=path) as c:
        wf = await c.submit_workflow({"name": "c", "tasks": [py("a", "result = 1")]})
        assert await c.cancel_workflow(wf.id) is True
        status = await c.get_workflow_status(wf.id)
        assert status is not None
        assert status.status is WorkflowStatus.CANCELLED
        assert [t.status for t in status.tasks] == [TaskStatus.CANCELLED]
        assert await c.cancel_workflow(wf.id) is False
        assert await c.cancel_workflow("no-such-workflow") is False
        with pytest.raises(WorkflowError) as info:
            await c.wait_for_workflow(wf.id)
        assert info.value.code == ErrorCode.WORKFLOW_CANCELLED
        assert (await c.resume_workflow(wf.id))["a"]["result"] == 1


@pytest.mark.parametrize("persistence", ["memory", "sqlite"])
async def test_export_workflow(tmp_path: Path, persistence: str) -> None:
    """export_workflow gives the run and every task's definition, status, result or
    error; durable stores add each task's attempt times; unknown ids are NOT_FOUND."""
    doc = {
        "name": "ex",
        "tasks": [
            py("a", "result = 1"),
            py("b", "raise ValueError('no')"),
            py("c", "result = 2", dependencies=["b"]),
        ],
    }
    async with client(persistence=persistence, db_path=tmp_path / "x.db") as c:
        with pytest.raises(TaskError):
            await c.run_workflow(doc)
        (wf,) = await c.list_workflows()
        exported = await c.export_workflow(wf.id)
        with pytest.raises(WorkflowError) as info:
            await c.export_workflow("nope")
    assert info.value.code == ErrorCode.WORKFLOW_NOT_FOUND
    assert (exported["name"], exported["status"]) == ("ex", "failed")
    tasks = {t["name"]: t for t in exported["tasks"]}
    assert [t["status"] for t in tasks.values()] == ["completed", "failed", "skipped"]
    assert tasks["a"]["result"]["result"] == 1
    assert tasks["b"]["error"]["code"] == ErrorCode.TASK_EXECUTION_FAILED
    assert tasks["c"]["dependencies"] == [tasks["b"]["id"]]
    assert tasks["c"]["params"] == {"code": "result = 2"}
    assert tasks["c"]["attempts"] == []
    if persistence == "sqlite":
        (attempt,) = tasks["b"]["attempts"]
        assert attempt["status"] == "failed"
        assert attempt["start"] <= attempt["end"]
    json.dumps(exported)  # JSON-ready
