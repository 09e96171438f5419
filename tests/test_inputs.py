"""User input edge cases: the ``$${`` escape and unknown references."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import pytest

from gleitzeit import GleitzeitClient
from gleitzeit.core.errors import ErrorCode, TaskError, WorkflowError

Isolation = Literal["inline", "process"]

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


def _workflow(*tasks: dict[str, Any]) -> dict[str, Any]:
    return {"name": "escapes", "tasks": list(tasks)}


@pytest.mark.parametrize("with_ref", [False, True])
@pytest.mark.parametrize("isolation", ["inline", "process"])
async def test_escape_gives_a_literal_reference_with_or_without_real_ones(
    with_ref: bool, isolation: Isolation
) -> None:
    code = "result = '$${HOME}'"
    if with_ref:
        code += " + str(${first.result})"
    tasks = [
        {"name": "first", "method": "python/execute", "params": {"code": "result = 1"}},
        {
            "name": "code",
            "method": "python/execute",
            "params": {"code": code},
            "dependencies": ["first"],
        },
        {
            "name": "text",
            "method": "mcp/tool.echo",
            "params": {"message": "cost: $${price}" + (" x${first.result}" if with_ref else "")},
            "dependencies": ["first"],
        },
    ]
    async with GleitzeitClient(persistence="memory", isolation=isolation) as client:
        results = await client.run_workflow(_workflow(*tasks))
    suffix = "1" if with_ref else ""
    assert results["code"]["result"] == "${HOME}" + suffix
    assert results["text"]["response"] == "cost: ${price}" + (" x1" if with_ref else "")


async def test_unknown_reference_suggests_the_escape() -> None:
    task = {"name": "t", "method": "python/execute", "params": {"code": "x = '${HOME}'"}}
    async with GleitzeitClient(persistence="memory") as client:
        with pytest.raises(WorkflowError) as info:
            await client.run_workflow(_workflow(task))
    assert info.value.code is ErrorCode.WORKFLOW_VALIDATION_FAILED
    assert "$${HOME}" in str(info.value)


async def test_missing_literal_file_is_a_validation_problem_before_anything_runs(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    tasks = [
        {
            "name": "side_effect",
            "method": "python/execute",
            "params": {"code": f"open({str(marker)!r}, 'w').close()"},
        },
        {
            "name": "script",
            "method": "python/execute",
            "params": {"file": "no_such_script.py"},
            "dependencies": ["side_effect"],
        },
        {"name": "bad", "method": "python/execute", "params": {"code": 3}},
    ]
    doc = tmp_path / "wf.yaml"
    doc.write_text(json.dumps(_workflow(*tasks)))
    async with GleitzeitClient(persistence="memory") as client:
        with pytest.raises(WorkflowError) as info:
            await client.run_workflow(str(doc))
    assert info.value.code is ErrorCode.WORKFLOW_VALIDATION_FAILED
    problems = info.value.data["problems"]
    fields = {(p["task"], p["field"]) for p in problems}
    assert ("script", "params.file") in fields  # reported together with the other problem
    assert ("bad", "params.code") in fields
    message = next(p["message"] for p in problems if p["field"] == "params.file")
    assert str(tmp_path / "no_such_script.py") in message  # says where it looked
    assert not marker.exists()


async def test_existing_relative_file_and_referenced_file_still_run(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text("result = args.get('n', 0) + 1\n")
    tasks = [
        {"name": "name", "method": "python/execute", "params": {"code": "result = 'script.py'"}},
        {"name": "direct", "method": "python/execute", "params": {"file": "script.py"}},
        {
            "name": "by_ref",
            "method": "python/execute",
            "params": {"file": str(tmp_path) + "/${name.result}", "args": {"n": 1}},
        },
    ]
    doc = tmp_path / "wf.yaml"
    doc.write_text(json.dumps(_workflow(*tasks)))
    async with GleitzeitClient(persistence="memory") as client:
        results = await client.run_workflow(str(doc))
    assert results["direct"]["result"] == 1
    assert results["by_ref"]["result"] == 2


@pytest.mark.parametrize("isolation", ["inline", "process"])
async def test_scripts_read_their_inputs_as_context_args_and_globals(isolation: Isolation) -> None:
    code = (
        "numbers = [int(n) for n in context.get('numbers_str').split(',')]\n"
        "result = {'sum': sum(numbers), 'same': args is context, 'glob': numbers_str}\n"
    )
    task = {
        "name": "t",
        "method": "python/execute",
        "params": {"code": code, "context": {"numbers_str": "1,2,3"}},
    }
    async with GleitzeitClient(persistence="memory", isolation=isolation) as client:
        results = await client.run_workflow(_workflow(task))
    assert results["t"]["result"] == {"sum": 6, "same": True, "glob": "1,2,3"}


@pytest.mark.parametrize("isolation", ["inline", "process"])
@pytest.mark.parametrize(
    ("code", "error_type"),
    [("raise KeyboardInterrupt", "KeyboardInterrupt"), ("import sys; sys.exit(3)", "SystemExit")],
)
async def test_interrupts_and_exits_in_task_code_are_task_errors(
    isolation: Isolation, code: str, error_type: str
) -> None:
    ok = {"name": "ok", "method": "python/execute", "params": {"code": "import sys; sys.exit(0)"}}
    bad = {"name": "bad", "method": "python/execute", "params": {"code": code}}
    async with GleitzeitClient(persistence="memory", isolation=isolation) as client:
        with pytest.raises(TaskError) as info:
            await client.run_workflow(_workflow(ok, bad))
        status = await client.list_workflows()
    assert info.value.data["error_type"] == error_type
    assert info.value.data["results"]["ok"]["success"] is True  # sys.exit(0) is success
    assert status


def test_paths_that_are_not_workflow_files_say_what_they_are(tmp_path: Path) -> None:
    from gleitzeit import load_workflow

    cases = {
        str(tmp_path): "is a directory",
        "name: x\ntasks: []\n": "looks like workflow text",
        str(tmp_path / "missing"): "file not found",
    }
    for given, expected in cases.items():
        with pytest.raises(WorkflowError) as info:
            load_workflow(given)
        assert expected in str(info.value), given
        assert "(none)" not in str(info.value)


async def test_a_long_lived_client_keeps_a_bounded_number_of_finished_runs() -> None:
    task = {"name": "t", "method": "python/execute", "params": {"code": "result = 1"}}
    async with GleitzeitClient(
        persistence="memory", isolation="inline", max_finished_runs=5
    ) as client:
        ids = []
        for _ in range(12):
            wf = await client.run_workflow_async(_workflow(task))
            await client.wait_for_workflow(wf.id)
            ids.append(wf.id)
        assert len(client._finished) == 5
        assert await client.get_workflow_status(ids[-1]) is not None
        assert await client.get_workflow_status(ids[0]) is None  # forgotten on memory


def test_max_finished_runs_must_be_positive() -> None:
    from gleitzeit.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        GleitzeitClient(persistence="memory", max_finished_runs=0)


def test_workers_must_be_positive() -> None:
    from gleitzeit.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        GleitzeitClient(persistence="memory", workers=0)
