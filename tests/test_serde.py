"""A workflow definition's round trip through the stores' serde: columns in, columns out."""

from __future__ import annotations

import json
from typing import Any

import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gleitzeit import Event, EventKind, RetryPolicy, Task, Workflow, load_workflow
from gleitzeit._serde import (
    _structure_task_records,
    _unstructure_task,
    compact_workflow,
    event_from_record,
    event_to_record,
    structure_compact,
    structure_workflow,
    unstructure_workflow,
)
from gleitzeit.core._plan import Plan
from tests.strategies import json_values

_TASKS_TYPE = Workflow.__attrs_attrs__.tasks.type

#: Text without ``$``: references are placed on purpose, well-formed.
_plain = st.text(st.characters(blacklist_characters="$"), max_size=8)


def _columns(plan: Plan) -> tuple[Any, ...]:
    """Everything a plan holds, for comparing two plans column by column."""
    return (
        plan.ids,
        plan.names,
        plan.methods,
        plan.protocols,
        list(plan.params),
        list(plan.dep_start),
        list(plan.dep_index),
        plan.needs_subst,
        dict(plan.by_id),
        dict(plan.aliases),
        plan.priorities,
        dict(plan.timeouts),
        dict(plan.retries),
        dict(plan.isolations),
        dict(plan.descriptions),
        dict(plan.tags),
        dict(plan.metadata),
    )


@st.composite
def _tasks(draw: st.DrawFn, loadable: bool = False, max_size: int = 12) -> tuple[Task, ...]:
    """Tasks built by hand: random optional fields, dependencies on earlier tasks by id.

    ``loadable``: tasks the loader takes (python tasks, unique names, valid options).
    """
    n = draw(st.integers(1, max_size))
    tasks: list[Task] = []
    for i in range(n):
        tid = f"t{i}"
        params: dict[str, Any] = (
            {"code": "result = 1"}
            if loadable
            else draw(st.dictionaries(_plain, json_values, max_size=3))
        )
        deps: tuple[str, ...] = ()
        if i:
            picks = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True))
            deps = tuple(f"t{j}" for j in picks)
            refer: bool = draw(st.booleans())
            if picks and refer:
                ref = draw(st.sampled_from([f"t{picks[0]}", tasks[picks[0]].name]))
                params["code" if loadable else "ref"] = f"result = ${{{ref}.result}}"
        if draw(st.booleans()):
            params["code" if loadable else "escaped"] = "result = '$${not a reference}'"
        names = [tid, f"n{i}"] if loadable else [tid, f"n{i}", "shared"]
        tasks.append(
            Task(
                id=tid,
                name=draw(st.sampled_from(names)),
                method="python/execute" if loadable else draw(st.sampled_from(["m/x", "llm/chat"])),
                protocol="python/v1" if loadable else draw(st.sampled_from(["m/v1", "llm/v1"])),
                params=params,
                dependencies=deps,
                timeout=draw(
                    st.none()
                    | st.integers(1, 100)
                    | st.floats(0.5, 1e6, allow_nan=False, allow_infinity=False)
                ),
                retry=draw(
                    st.none()
                    | st.builds(
                        RetryPolicy,
                        max_attempts=st.integers(1, 5),
                        base_delay=st.floats(0, 10),
                        max_delay=st.floats(0, 1000),
                        jitter=st.booleans(),
                    )
                ),
                priority=draw(st.sampled_from([0, 0, 1, -1, 2])),
                isolation=draw(
                    st.none() | st.sampled_from(["inline", "process"] if loadable else ["x", ""])
                ),
                description=draw(st.none() | _plain),
                tags=tuple(draw(st.lists(_plain, max_size=3))),
                metadata=draw(st.dictionaries(_plain, json_values, max_size=2)),
            )
        )
    return tuple(tasks)


def _through_json(wf: Workflow) -> Workflow:
    return structure_workflow(json.loads(json.dumps(unstructure_workflow(wf))))


def _assert_same_tasks(got: Any, want: Any) -> None:
    """Task equality, and the fields Task equality leaves out (params, metadata)."""
    assert tuple(got) == tuple(want)
    for a, b in zip(got, want, strict=True):
        assert a.params == b.params
        assert a.metadata == b.metadata


@given(st.booleans().flatmap(lambda loaded: st.tuples(st.just(loaded), _tasks(loaded))))
@settings(max_examples=200, deadline=None)
def test_a_workflow_round_trips_into_a_plan(case: tuple[bool, tuple[Task, ...]]) -> None:
    """Stored and read back, a workflow is equal to itself, its tasks a plan built from
    the records: the plan the engine would build from the Task objects cattrs makes."""
    loaded, tasks = case
    wf = Workflow(id="w", name="random", tasks=tasks, timeout=5.0, metadata={"k": [1]})
    if loaded:
        wf = load_workflow(wf)  # a loader-built plan (references among the dependencies)
        assert isinstance(wf.tasks, Plan)
    data = json.loads(json.dumps(unstructure_workflow(wf)))
    slow = _structure_task_records(data["tasks"], _TASKS_TYPE)  # cattrs, Task by Task
    back = structure_workflow(data)
    assert back == wf
    assert back.metadata == wf.metadata
    assert isinstance(back.tasks, Plan)
    _assert_same_tasks(back.tasks, wf.tasks)
    _assert_same_tasks(back.tasks, slow)
    assert _columns(back.tasks) == _columns(Plan.from_tasks(slow))
    # ... and written again, it gives the same records.
    assert unstructure_workflow(back) == data


@given(_tasks(), _tasks(loadable=True))
@settings(max_examples=200, deadline=None)
def test_a_plan_unstructures_as_its_task_objects_do(
    tasks: tuple[Task, ...], loadable: tuple[Task, ...]
) -> None:
    """The fast path writes exactly the Task hook's records: keys, order, value forms."""
    loaded = load_workflow(Workflow(id="w", name="w", tasks=loadable)).tasks
    for plan in (Plan.from_tasks(tasks), loaded):
        assert isinstance(plan, Plan)
        fast = unstructure_workflow(Workflow(id="w", name="w", tasks=plan))["tasks"]
        slow = [_unstructure_task(t) for t in tuple(plan)]
        assert fast == slow
        assert [list(r) for r in fast] == [list(r) for r in slow]  # the same key order
        assert json.dumps(fast) == json.dumps(slow)
        assert plan._tasks is not None  # (the slow side made them; the fast side did not need to)


def test_the_fast_path_makes_no_task_objects() -> None:
    doc = {
        "name": "options",
        "tasks": [
            {
                "name": f"t{i}",
                "method": "python/execute",
                "isolation": "inline",
                "timeout": 3,
                "retry": {"max_attempts": 2},
                "priority": "high",
                "description": "d",
                "tags": ["a"],
                "metadata": {"m": 1},
                "params": {"code": "result = 1"},
                **({"dependencies": [f"t{i - 1}"]} if i else {}),
            }
            for i in range(20)
        ],
    }
    wf = load_workflow(doc)
    plan = wf.tasks
    assert isinstance(plan, Plan)
    data = unstructure_workflow(wf)
    assert plan._tasks is None
    assert data["tasks"][1] == {
        "id": "t1",
        "name": "t1",
        "method": "python/execute",
        "protocol": "python/v1",
        "params": {"code": "result = 1"},
        "dependencies": ["t0"],
        "timeout": 3.0,
        "retry": {"max_attempts": 2},
        "priority": 1,
        "isolation": "inline",
        "description": "d",
        "tags": ["a"],
        "metadata": {"m": 1},
    }
    back = structure_workflow(json.loads(json.dumps(data)))
    assert isinstance(back.tasks, Plan)
    assert back.tasks._tasks is None
    assert _columns(back.tasks) == _columns(plan)


def test_a_journal_record_of_a_submitted_workflow_reads_back_as_a_plan() -> None:
    wf = load_workflow(
        {
            "name": "w",
            "tasks": [
                {"name": "a", "method": "python/execute", "params": {"code": "result = 1"}},
                {"name": "b", "method": "python/execute", "params": {"code": "${a.result}"}},
            ],
        }
    )
    event = Event(kind=EventKind.WORKFLOW_SUBMITTED, workflow_id=wf.id, at=1.0, workflow=wf)
    back = event_from_record(json.loads(json.dumps(event_to_record(event))))
    assert back == event
    assert back.workflow is not None
    assert isinstance(back.workflow.tasks, Plan)
    assert back.workflow.tasks.needs_subst == b"\x00\x01"
    assert list(back.workflow.tasks.deps_of(1)) == [0]


def _stored() -> dict[str, Any]:
    wf = Workflow(
        id="w",
        name="w",
        tasks=(
            Task(id="a", name="a", method="m/x", protocol="m/v1", params={"x": 1}),
            Task(id="b", name="b", method="m/x", protocol="m/v1", dependencies=("a",)),
        ),
    )
    data: dict[str, Any] = json.loads(json.dumps(unstructure_workflow(wf)))
    return data


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", ...),  # missing
        ("method", ...),
        ("params", [1]),
        ("params", None),
        ("dependencies", None),
        ("timeout", "soon"),
        ("retry", {"max_attempts": "many"}),
        ("retry", 3),
        ("priority", "urgent"),
        ("tags", None),
        ("tags", 3),
        ("metadata", [1]),
        ("status", "sleeping"),
    ],
)
def test_malformed_task_records_raise_as_cattrs_does(field: str, value: Any) -> None:
    data = _stored()
    if value is ...:
        del data["tasks"][1][field]
    else:
        data["tasks"][1][field] = value
    with pytest.raises(cattrs.BaseValidationError) as info:
        structure_workflow(data)
    with pytest.raises(cattrs.BaseValidationError) as slow:
        _structure_task_records(data["tasks"], _TASKS_TYPE)
    # The same complaint as cattrs' own Task hook, inside the workflow's.
    (inner,) = info.value.exceptions
    assert repr(inner) == repr(slow.value)


def test_malformed_tasks_raise_as_cattrs_does() -> None:
    for tasks in (None, "t", [None], [1]):
        data = {**_stored(), "tasks": tasks}
        with pytest.raises(cattrs.BaseValidationError):
            structure_workflow(data)


@pytest.mark.parametrize(
    "change",
    [
        {"id": 5},  # cattrs makes it "5"
        {"timeout": "2.5"},  # ... and 2.5
        {"priority": True},
        {"tags": ["a", 1]},
        {"status": "completed"},  # a status a plan has no column for
        {"unknown": 1},  # cattrs ignores it
        {"dependencies": "a"},  # cattrs takes a string as a sequence
        {"dependencies": ["a", "a"]},  # kept twice by a Task, once by a plan
        {"dependencies": ["nobody"]},  # the engine's planning reports it
        {"id": "a"},  # a repeated id
    ],
)
def test_records_cattrs_accepts_are_read_as_cattrs_reads_them(change: dict[str, Any]) -> None:
    """What the plan builder leaves to cattrs reads back as Task objects, as before."""
    data = _stored()
    data["tasks"][1].update(change)
    back = structure_workflow(data)
    assert not isinstance(back.tasks, Plan)
    _assert_same_tasks(back.tasks, _structure_task_records(data["tasks"], _TASKS_TYPE))


def test_an_empty_workflow_reads_back_empty() -> None:
    back = structure_workflow({**_stored(), "tasks": []})
    assert back.tasks == ()
    assert structure_workflow({"id": "w", "name": "w"}).tasks == ()


@given(st.booleans().flatmap(lambda loaded: st.tuples(st.just(loaded), _tasks(loaded))))
@settings(max_examples=200, deadline=None)
def test_a_compact_definition_round_trips_into_the_same_plan(
    case: tuple[bool, tuple[Task, ...]],
) -> None:
    """The plan in columns, through JSON: the same workflow, the same plan, column by column."""
    loaded, tasks = case
    wf = Workflow(id="w", name="random", tasks=tasks, timeout=5.0, metadata={"k": [1]})
    if loaded:
        wf = load_workflow(wf)
    plan = Plan.from_tasks(wf.tasks)
    data = json.loads(json.dumps(compact_workflow(wf)))
    assert "tasks" not in data
    back = structure_compact(data)
    assert back == wf
    assert back.metadata == wf.metadata
    assert back.timeout == 5.0
    assert isinstance(back.tasks, Plan)
    _assert_same_tasks(back.tasks, wf.tasks)
    assert _columns(back.tasks) == _columns(plan)
    assert compact_workflow(back) == data


def test_a_compact_definition_is_smaller_than_records() -> None:
    """Many tasks alike: methods and protocols are stored once, not per task."""
    doc = {
        "name": "many",
        "tasks": [
            {"name": f"t{i}", "method": "python/execute", "params": {"code": "result = 1"}}
            for i in range(200)
        ],
    }
    wf = load_workflow(doc)
    compact = json.dumps(compact_workflow(wf))
    assert len(compact) * 2 < len(json.dumps(unstructure_workflow(wf)))
    assert compact.count("python/execute") == 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"ids": ["a", "a"]}, "unique"),
        ({"ids": ["a", 1]}, "strings"),
        ({"params": [{}]}, "params"),
        ({"methods": {"all": 3}}, "strings"),
        ({"dep_start": [0, 1, 1], "dep_index": [5]}, "dependencies"),
        ({"dep_start": [0, 1, 0], "dep_index": [0]}, "dependencies"),
        ({"timeouts": {"7": 1.0}}, "timeouts"),
        ({"isolations": {"0": 3}}, "isolations"),
        ({"v": 99}, "version"),
    ],
)
def test_malformed_columns_are_a_value_error(change: dict[str, Any], problem: str) -> None:
    """Columns that do not hold a plan say what is wrong."""
    data = compact_workflow(
        load_workflow(
            {
                "name": "two",
                "tasks": [
                    {"name": "a", "method": "python/execute", "params": {"code": "result = 1"}},
                    {"name": "b", "method": "python/execute", "params": {"code": "result = 2"}},
                ],
            }
        )
    )
    data["plan"].update(change)
    with pytest.raises(ValueError, match=problem):
        structure_compact(data)
