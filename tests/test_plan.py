"""The plan a workflow carries: tasks in columns, checked shape by shape."""

from __future__ import annotations

import copy
import pickle
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gleitzeit import Task, load_workflow
from gleitzeit._loader._graph import _parse_exactly
from gleitzeit._loader._problems import Problems
from gleitzeit._providers import builtin_methods
from gleitzeit.core._plan import Plan
from gleitzeit.core._scheduler import Scheduler
from gleitzeit.core.errors import CircularDependencyError, WorkflowValidationError

if TYPE_CHECKING:
    from pathlib import Path


def _exactly(doc: dict[str, Any]) -> Plan:
    """The plan the exact path (every check on every task) builds."""
    problems = Problems()
    plan = _parse_exactly(doc, doc["tasks"], problems, builtin_methods(), None)
    assert not problems.items, problems.items
    assert plan is not None
    return plan


def _columns(plan: Plan) -> tuple[Any, ...]:
    return (
        plan.ids,
        plan.names,
        plan.methods,
        plan.protocols,
        [dict(p) for p in plan.params],
        [sorted(set(plan.deps_of(i))) for i in range(len(plan))],
        plan.needs_subst,
        dict(plan.aliases),
        plan.priorities,
        dict(plan.timeouts),
        dict(plan.retries),
        dict(plan.isolations),
    )


#: Task templates: the usual generated one, and the rarer fields and spellings.
_TEMPLATES: list[dict[str, Any]] = [
    {"method": "python/execute", "params": {"code": "result = 1"}},
    {"method": "python/execute", "parameters": {"code": "result = 2", "args": {"n": 1}}},
    {"method": "python/execute", "params": {"code": "result = 3"}, "timeout": 5},
    {"method": "python/execute", "params": {"code": "x"}, "priority": "high", "tags": ["a"]},
    {"method": "python/execute", "params": {"code": "y"}, "retry": {"max_attempts": 2}},
    {"method": "python/execute", "protocol": "python/v1", "params": {"code": "z"}},
    {"method": "llm/chat", "params": {"model": "m", "prompt": "hi"}},
]


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 14))
    tasks: list[dict[str, Any]] = []
    for i in range(n):
        task = dict(draw(st.sampled_from(_TEMPLATES)))
        how = draw(st.sampled_from(["id", "name", "both", "int"]))
        if how in ("id", "both"):
            task["id"] = f"t{i}"
        if how in ("name", "both"):
            task["name"] = f"n{i}" if how == "both" else f"t{i}"
        if how == "int":
            task["id"] = i
        if i:
            picks = draw(st.lists(st.integers(0, i - 1), max_size=3))
            by = draw(st.sampled_from(["id", "name"]))
            deps: list[Any] = [f"n{j}" if by == "name" else f"t{j}" for j in picks]
            deps = [j if tasks[j].get("id") == j else d for j, d in zip(picks, deps, strict=True)]
            if by == "name":  # a name that is not there: use the id
                deps = [
                    d if any(t.get("name") == d for t in tasks) else tasks[j].get("id", f"t{j}")
                    for j, d in zip(picks, deps, strict=True)
                ]
            if len(deps) > 0 or draw(st.booleans()):
                task["dependencies"] = deps
            if len(picks) > 0 and draw(st.booleans()) and task["method"] == "llm/chat":
                j = picks[0]
                ref = tasks[j].get("name") or tasks[j]["id"]
                task["params"] = {**task["params"], "prompt": f"say ${{{ref}.result}}"}
        tasks.append(task)
    return {"name": "shapes", "tasks": tasks}


@given(_documents())
@settings(max_examples=150, deadline=None)
def test_tasks_checked_shape_by_shape_load_as_the_exact_path_loads_them(
    doc: dict[str, Any],
) -> None:
    wf = load_workflow(doc)
    plan = wf.tasks
    assert isinstance(plan, Plan)
    exact = _exactly(doc)
    assert _columns(plan) == _columns(exact)
    assert tuple(plan) == tuple(exact)
    for task, raw in zip(plan, doc["tasks"], strict=True):
        assert task.params == (raw.get("params") or raw.get("parameters") or {})


def _generated(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": "gen",
        "tasks": [
            {
                "id": f"t{i}",
                "method": "python/execute",
                "params": {"code": "result = 1"},
                "dependencies": [f"t{i - 1}"] if i else [],
                **extra,
            }
            for i in range(n)
        ],
    }


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"id": "  "}, "id", "'id' must be a non-empty string"),
        ({"dependencies": ["t1", "t99"]}, "dependencies", "names no task"),
        ({"dependencies": [[]]}, "dependencies", "must be a task name or id"),
        ({"params": {"code": "x = ${t0..x}"}}, "params", "is malformed"),
        ({"params": {"code": "${nobody.result}"}}, "params", "names no task 'nobody'"),
        ({"params": {"code": 5}}, "params.code", "must be a string"),
        ({"id": "t1"}, "id", "duplicate task id 't1'"),
    ],
)
def test_a_problem_in_a_later_task_of_a_shape_is_reported_like_any_other(
    change: dict[str, Any], field: str, words: str
) -> None:
    doc = _generated(6)
    doc["tasks"][4] = {**doc["tasks"][4], **change}
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow(doc)
    problems = info.value.data["problems"]
    assert any(p["field"] == field and words in p["message"] for p in problems), problems


def test_a_cycle_through_later_tasks_of_a_shape_is_named() -> None:
    doc = _generated(5)
    doc["tasks"][1]["dependencies"] = ["t0", "t3"]
    with pytest.raises(CircularDependencyError) as info:
        load_workflow(doc)
    assert sorted(info.value.data["cycle"]) == ["t1", "t2", "t3"]


def test_a_loaded_workflow_carries_its_plan_and_makes_tasks_on_demand() -> None:
    wf = load_workflow(_generated(4, timeout=3))
    plan = wf.tasks
    assert isinstance(plan, Plan)
    assert plan.ids == ("t0", "t1", "t2", "t3")
    assert list(plan.deps_of(3)) == [2]
    assert plan.timeouts == {0: 3.0, 1: 3.0, 2: 3.0, 3: 3.0}
    assert plan._tasks is None  # no Task made yet
    with pytest.raises(AttributeError, match="immutable"):
        plan.ids = ()
    again = pickle.loads(pickle.dumps(wf))
    assert again == wf
    assert isinstance(again.tasks, Plan)
    assert copy.deepcopy(wf) == wf
    task = plan[2]
    assert isinstance(task, Task)
    assert (task.id, task.dependencies, task.timeout) == ("t2", ("t1",), 3.0)
    assert plan[2] is task
    assert plan[-2] is task
    assert plan[1:3] == (plan[1], plan[2])
    assert wf.get_task("t3") is plan[3]
    assert wf.tasks == tuple(plan)
    assert tuple(plan) == wf.tasks
    # Evolving a loaded workflow keeps its plan: loading it again is free.
    renamed = attrs.evolve(wf, name="other")
    assert load_workflow(renamed) is renamed
    # A workflow built by hand is checked and planned again.
    by_hand = attrs.evolve(wf, tasks=tuple(plan))
    again = load_workflow(by_hand)
    assert isinstance(again.tasks, Plan)
    assert tuple(again.tasks) == tuple(plan)


def test_the_scheduler_runs_from_the_plan_csr() -> None:
    doc = _generated(3)
    sink = {"id": "sink", "method": "python/execute", "params": {"code": "1"}}
    doc["tasks"].append({**sink, "dependencies": ["t0", "t2"]})
    plan = load_workflow(doc).tasks
    assert isinstance(plan, Plan)
    start, index = plan.dependents()
    assert [list(index[start[i] : start[i + 1]]) for i in range(4)] == [[1, 3], [2], [3], []]
    sched = Scheduler.from_plan(plan, completed=[0])
    assert sched.pop_ready() == 1
    assert sched.pop_ready() is None
    assert sched.complete(1) == 1
    assert sched.pop_ready() == 2
    assert sched.fail(2) == [3]
    assert sched.finished


@given(_documents())
@settings(max_examples=100, deadline=None)
def test_a_plan_is_stored_as_its_tasks_are(doc: dict[str, Any]) -> None:
    """A plan's tasks unstructure from its columns exactly as Task objects do."""
    from gleitzeit._serde import converter, structure_workflow, unstructure_workflow

    wf = load_workflow(doc)
    plan = wf.tasks
    assert isinstance(plan, Plan)
    data = unstructure_workflow(wf)
    assert data["tasks"] == [converter.unstructure(t) for t in tuple(_exactly(doc))]
    assert structure_workflow(data) == wf


@pytest.mark.anyio
async def test_a_run_reads_the_plan_and_makes_no_task_objects() -> None:
    from gleitzeit import GleitzeitClient

    wf = load_workflow(_generated(50))
    plan = wf.tasks
    assert isinstance(plan, Plan)
    async with GleitzeitClient(persistence="memory", isolation="inline") as client:
        results = await client.run_workflow(wf)
        status = await client.get_workflow_status(wf.id)
    assert list(results) == list(plan.ids)
    assert status is not None
    assert [t.status for t in status.tasks] == ["completed"] * 50
    assert plan._tasks is None  # the snapshot's tasks are its own; none made on the plan


def test_a_missing_file_in_a_later_task_of_a_shape_is_reported(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("result = 1\n", encoding="utf-8")
    tasks = [
        {"id": f"t{i}", "method": "python/execute", "params": {"file": str(script)}}
        for i in range(5)
    ]
    tasks[3]["params"] = {"file": str(tmp_path / "gone.py")}
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow({"name": "files", "tasks": tasks})
    problems = info.value.data["problems"]
    assert [(p["task"], p["field"]) for p in problems] == [("t3", "params.file")]
    assert "not found" in problems[0]["message"]
