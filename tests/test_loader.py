"""Tests for gleitzeit._loader: both document shapes, and every problem at once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gleitzeit import RetryPolicy, Task, Workflow, load_workflow
from gleitzeit.core.errors import (
    CircularDependencyError,
    ErrorCode,
    GleitzeitError,
    WorkflowError,
    WorkflowValidationError,
)

from .fixtures import seed_examples
from .strategies import dag_workflow, dags, json_values

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
#: The scripts the seed's examples name in ``params.file`` (checked at load time).
SEED_SCRIPTS = Path(__file__).parent / "fixtures" / "seed_scripts"


@pytest.fixture
def in_seed_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative script paths of dict-loaded seed examples resolve against the CWD."""
    monkeypatch.chdir(SEED_SCRIPTS)


@pytest.mark.parametrize("name", sorted(seed_examples.ALL))
@pytest.mark.usefixtures("in_seed_scripts")
def test_seed_examples_load_from_dict_yaml_and_json(name: str, tmp_path: Path) -> None:
    """Every workflow in the seed reference validates, from a dict and from files."""
    shutil.copytree(SEED_SCRIPTS, tmp_path, dirs_exist_ok=True)
    doc = seed_examples.ALL[name]
    wf = load_workflow(doc)
    assert wf.name == doc["name"]
    assert [t.id for t in wf.tasks] == [t["name"] for t in doc["tasks"]]
    (tmp_path / "wf.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    (tmp_path / "wf.json").write_text(json.dumps(doc), encoding="utf-8")
    for file in ("wf.yaml", "wf.json"):
        from_file = load_workflow(tmp_path / file)
        assert from_file.tasks == wf.tasks
        assert from_file.source_dir == str(tmp_path.resolve())


@pytest.mark.usefixtures("in_seed_scripts")
def test_seed_references_imply_dependencies() -> None:
    """`${Task Name.x}` references resolve by name and add dependencies."""
    wf = load_workflow(seed_examples.DATA_PIPELINE)
    save = wf.get_task("Save Results")
    assert save is not None
    assert save.dependencies == ("Transform Data", "Generate Report")
    validate = wf.get_task("Validate Data")
    assert validate is not None
    assert validate.protocol == "python/v1"
    assert validate.params["args"] == {"data": "${Extract Data.result}"}


def test_create_workflow_shape_with_description() -> None:
    """The create_workflow example keeps its description and infers protocols."""
    wf = load_workflow(seed_examples.MULTI_STAGE)
    assert wf.description == "Process data through multiple stages"
    assert [t.protocol for t in wf.tasks] == ["python/v1", "python/v1", "llm/v1"]


def test_legacy_ids_parameters_and_priority() -> None:
    """The earlier system's shape: ids, `parameters`, ignored keys, int priority."""
    wf = load_workflow(LEGACY / "dependent_workflow.yaml")
    first, second = wf.tasks
    assert (first.id, first.name, first.priority) == ("generate-topic", "Generate Topic", 3)
    assert first.params["max_tokens"] == 50
    assert second.dependencies == ("generate-topic",)
    assert second.protocol == "llm/v1"


def test_legacy_python_workflow_options() -> None:
    """`max_parallel_tasks`, `context`, retry with `backoff`, dependency by name."""
    wf = load_workflow(LEGACY / "python_only_workflow.yaml")
    assert wf.max_concurrent == 2
    calc = wf.tasks[1]
    assert calc.dependencies == ("generate",)
    assert calc.retry == RetryPolicy(max_attempts=2, base_delay=0.5)
    assert wf.source_dir == str(LEGACY.resolve())


@pytest.mark.parametrize(
    "file",
    [
        "mcp_workflow.yaml",
        "meeting_analysis_workflow.yaml",
        "vision_workflow.yaml",
        "batch_text_dynamic.yaml",
        "batch_python_workflow.json",
    ],
)
def test_legacy_documents_load(file: str) -> None:
    """The earlier system's other example shapes load."""
    wf = load_workflow(LEGACY / file)
    assert wf.name


def test_meeting_analysis_implied_fan_in() -> None:
    """References alone create dependencies (by name, with spaces); `high` → 1."""
    wf = load_workflow(LEGACY / "meeting_analysis_workflow.yaml")
    report = wf.tasks[2]
    assert report.dependencies == ("Summarize", "Action Items")
    assert report.priority == 1


def test_batch_documents_parse() -> None:
    """Batch documents keep their batch spec and template (expanded later)."""
    wf = load_workflow(LEGACY / "batch_text_dynamic.yaml")
    assert wf.is_batch
    assert wf.batch is not None
    assert (wf.batch.directory, wf.batch.pattern) == ("documents", "*.txt")
    assert wf.template is not None
    assert wf.template["method"] == "llm/chat"
    assert wf.tasks == ()


def _problems(doc: Any) -> list[dict[str, Any]]:
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow(doc)
    err = info.value
    assert err.code == ErrorCode.WORKFLOW_VALIDATION_FAILED
    assert isinstance(err, WorkflowError)
    assert "WORKFLOW_VALIDATION_FAILED" in str(err)
    problems: list[dict[str, Any]] = err.data["problems"]
    for p in problems:
        assert p["message"] in err.message or len(problems) > 20
    return problems


def _task(**over: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"name": "a", "method": "python/execute", "params": {"code": "x = 1"}}
    task.update(over)
    return {k: v for k, v in task.items() if v is not None}


BAD_TASKS: list[tuple[dict[str, Any], str, str]] = [
    (_task(method=None), "method", "missing required field 'method'"),
    (_task(method="llm/chta"), "method", "did you mean 'llm/chat'"),
    (_task(method=7), "method", "must be a string"),
    (_task(protocol="llm/v1"), "protocol", "does not match"),
    (_task(params={"code": "x", "file": "y.py"}), "params", "not both"),
    (_task(params={}), "params", "needs 'code' or 'file'"),
    (_task(params={"code": 5}), "params.code", "must be a string"),
    (_task(params={"code": "x", "args": {}, "context": {}}), "params", "aliases"),
    (_task(params={"code": "x", "timout": 3}), "params.timout", "did you mean 'timeout'"),
    (_task(params=["code"]), "params", "must be a mapping"),
    (_task(params={"code": "x"}, parameters={"code": "y"}), "params", "not both"),
    (_task(dependencies=["nope"]), "dependencies", "names no task"),
    (_task(dependencies=[{"x": 1}]), "dependencies", "must be a task name"),
    (_task(params={"code": "${ghost.result}"}), "params", "names no task 'ghost'"),
    (_task(params={"code": "${a[x]}"}), "params", "malformed"),
    (_task(timeout=-1), "timeout", "positive number"),
    (_task(timeout="soon"), "timeout", "must be a number"),
    (_task(retry={"max_attempts": 0}), "retry.max_attempts", "at least 1"),
    (_task(retry={"attempts": 3}), "attempts", "did you mean 'max_attempts'"),
    (_task(retry=3), "retry", "must be a mapping"),
    (_task(priority="asap"), "priority", "low, normal, high, urgent"),
    (_task(isolation="thread"), "isolation", "'process' or 'inline'"),
    (_task(dependecies=["a"]), "dependecies", "did you mean 'dependencies'"),
    (_task(name=None), "name", "needs a 'name'"),
    (_task(tags="x"), "tags", "must be a list"),
    (
        {"name": "llm", "method": "llm/chat", "params": {"model": "m"}},
        "params",
        "needs 'messages' or 'prompt'",
    ),
    (
        {"name": "llm", "method": "llm/chat", "params": {"messages": [{"role": "user"}]}},
        "params.messages",
        "'role' and 'content'",
    ),
    (
        {"name": "v", "method": "llm/vision", "params": {"prompt": "x"}},
        "params",
        "needs 'images' or 'image_path'",
    ),
]


@pytest.mark.parametrize(("task", "field", "text"), BAD_TASKS)
def test_each_bad_task_is_reported(task: dict[str, Any], field: str, text: str) -> None:
    """Each bad task field is one problem naming the task, the field and a fix."""
    problems = _problems({"name": "wf", "tasks": [task]})
    assert any(p["field"] == field and text in p["message"] for p in problems), problems
    assert all(p["task"] is not None for p in problems)


@pytest.mark.parametrize(
    ("doc", "field", "text"),
    [
        ({"tasks": [_task()]}, "name", "missing required field 'name'"),
        ({"name": "", "tasks": [_task()]}, "name", "non-empty string"),
        ({"name": "w"}, "tasks", "missing required field 'tasks'"),
        ({"name": "w", "tasks": []}, "tasks", "at least one task"),
        ({"name": "w", "tasks": {"a": 1}}, "tasks", "must be a list"),
        ({"name": "w", "tasks": [_task()], "taks": 1}, "taks", "did you mean 'tasks'"),
        ({"name": "w", "tasks": [_task()], "timeout": 0}, "timeout", "positive"),
        (
            {"name": "w", "tasks": [_task()], "max_parallel_tasks": 0},
            "max_parallel_tasks",
            "at least 1",
        ),
        ({"name": "w", "tasks": [_task()], "template": {}}, "template", "batch documents"),
        (
            {"name": "w", "type": "batch", "template": {"method": "llm/chat"}},
            "batch",
            "needs 'batch",
        ),
        (
            {"name": "w", "batch": {"pattern": "*"}, "template": {"method": "llm/chat"}},
            "batch",
            "'directory' or a list of 'files'",
        ),
        ({"name": "w", "batch": {"directory": "d"}}, "template", "needs a 'template'"),
        (
            {"name": "w", "batch": {"directory": "d"}, "template": {"method": "x/y"}},
            "method",
            "known method",
        ),
        (
            {
                "name": "w",
                "batch": {"directory": "d"},
                "template": {"method": "llm/chat", "promt": "x"},
            },
            "params.promt",
            "did you mean 'prompt'",
        ),
        ({"name": "w", "tasks": [_task(), _task()]}, "id", "duplicate task id 'a'"),
        (
            {
                "name": "w",
                "tasks": [_task(id="x"), _task(id="y"), _task(name="b", dependencies=["a"])],
            },
            "dependencies",
            "ambiguous",
        ),
        ({"name": "w", "tasks": ["just a string"]}, None, "must be a mapping"),
    ],
)
def test_each_bad_workflow_field_is_reported(
    doc: dict[str, Any], field: str | None, text: str
) -> None:
    """Each bad workflow-level input is a problem naming its field and a fix."""
    problems = _problems(doc)
    assert any(p["field"] == field and text in p["message"] for p in problems), problems


def test_all_problems_are_reported_at_once() -> None:
    """Problems from several tasks and the workflow come back together."""
    doc = {
        "name": "w",
        "extra": 1,
        "tasks": [
            _task(method="bad/x"),
            _task(name="b", timeout=-5),
            _task(name="c", dependencies=["zzz"]),
        ],
    }
    problems = _problems(doc)
    assert {(p["task"], p["field"]) for p in problems} == {
        (None, "extra"),
        ("a", "method"),
        ("b", "timeout"),
        ("c", "dependencies"),
    }


@pytest.mark.parametrize(
    ("tasks", "cycle"),
    [
        ([_task(dependencies=["a"])], ["a"]),
        ([_task(params={"code": "${a.result}"})], ["a"]),
        ([_task(dependencies=["b"]), _task(name="b", dependencies=["a"])], ["a", "b"]),
        (
            [
                _task(dependencies=["c"]),
                _task(name="b", dependencies=["a"]),
                _task(name="c", params={"code": "${b.result}"}),
            ],
            ["a", "c", "b"],
        ),
    ],
)
def test_cycles_are_reported_with_their_path(tasks: list[dict[str, Any]], cycle: list[str]) -> None:
    """A cycle (also through a reference, or to itself) lists its ids in order."""
    with pytest.raises(CircularDependencyError) as info:
        load_workflow({"name": "w", "tasks": tasks})
    assert info.value.code == ErrorCode.WORKFLOW_CIRCULAR_DEPENDENCY
    assert info.value.data["cycle"] == cycle
    assert "remove one" in info.value.message


@given(dags(max_size=25))
def test_random_dags_validate(deps: list[list[int]]) -> None:
    """Every random DAG document loads with its dependencies intact."""
    wf = load_workflow(dag_workflow(deps))
    assert [t.dependencies for t in wf.tasks] == [tuple(f"t{d}" for d in n) for n in deps]


@given(dags(max_size=25), st.data())
def test_back_edge_is_a_reported_cycle(deps: list[list[int]], data: st.DataObject) -> None:
    """Adding a back edge gives WORKFLOW_CIRCULAR_DEPENDENCY whose ids form a cycle."""
    n = len(deps)
    lo = data.draw(st.integers(0, n - 1))
    hi = data.draw(st.integers(lo, n - 1))
    # make `hi` reachable from `lo` by a chain, then close it with a back edge
    doc = dag_workflow(deps)
    for k in range(lo + 1, hi + 1):
        doc["tasks"][k]["dependencies"].append(f"t{k - 1}")
    doc["tasks"][lo]["dependencies"].append(f"t{hi}")
    with pytest.raises(CircularDependencyError) as info:
        load_workflow(doc)
    cycle = info.value.data["cycle"]
    deps_of = {t["name"]: set(t["dependencies"]) for t in doc["tasks"]}
    assert all(cycle[(k + 1) % len(cycle)] in deps_of[c] for k, c in enumerate(cycle))


@given(
    st.dictionaries(
        st.sampled_from(["name", "tasks", "id", "timeout", "batch", "type", "template", "x"]),
        json_values,
        max_size=6,
    )
    | st.builds(
        lambda t: {"name": "w", "tasks": t},
        st.lists(
            st.dictionaries(
                st.sampled_from(
                    [
                        "name",
                        "id",
                        "method",
                        "params",
                        "dependencies",
                        "retry",
                        "priority",
                        "timeout",
                        "tags",
                    ]
                ),
                json_values | st.just("python/execute"),
            ),
            max_size=4,
        ),
    )
)
def test_garbage_never_raises_a_bare_exception(doc: dict[str, Any]) -> None:
    """Whatever the document, loading either works or raises a GleitzeitError."""
    code = None
    try:
        load_workflow(doc)
    except GleitzeitError as err:
        code = err.code
    assert code in (
        None,
        ErrorCode.WORKFLOW_VALIDATION_FAILED,
        ErrorCode.WORKFLOW_CIRCULAR_DEPENDENCY,
    )


# --- files ------------------------------------------------------------------------


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    """Bad YAML gives WORKFLOW_VALIDATION_FAILED with its line and column."""
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntasks:\n  - name: a\n    method: [unclosed\n", encoding="utf-8")
    problems = _problems(path)
    assert problems[0]["line"] == 5
    assert "YAML syntax error at line 5" in problems[0]["message"]


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    """Bad JSON gives its line and column."""
    path = tmp_path / "bad.json"
    path.write_text('{\n  "name": "x",\n  "tasks": [,]\n}\n', encoding="utf-8")
    problems = _problems(path)
    assert (problems[0]["line"], problems[0]["column"]) == (3, 13)


@pytest.mark.parametrize(
    ("name", "content", "text"),
    [
        ("missing.yaml", None, "file not found"),
        ("empty.yaml", "", "the file is empty"),
        ("list.yaml", "- a\n- b\n", "must be a mapping"),
        ("wf.txt", "name: x", "unsupported file type"),
        ("latin.yaml", b"name: \xe9\n", "not UTF-8"),
    ],
)
def test_file_problems(tmp_path: Path, name: str, content: str | bytes | None, text: str) -> None:
    """A missing, empty, non-mapping, unknown-type or non-UTF-8 file is a clear problem."""
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    problems = _problems(str(path))
    assert text in problems[0]["message"]


def test_directory_and_wrong_type(tmp_path: Path) -> None:
    """A directory path or an unsupported source type is a validation error."""
    (tmp_path / "d.yaml").mkdir()
    assert "directory" in _problems(tmp_path / "d.yaml")[0]["message"]
    assert "cannot load a workflow from a int" in _problems(42)[0]["message"]


def _hand_made(wf_id: str, *dependencies: str) -> Workflow:
    task = Task(
        id="a",
        name="a",
        method="python/execute",
        protocol="python/v1",
        params={"code": "1"},
        dependencies=dependencies,
    )
    return Workflow(id=wf_id, name="hand made", tasks=(task,))


@pytest.mark.usefixtures("in_seed_scripts")
def test_workflow_objects_are_revalidated() -> None:
    """A loaded Workflow passes through; a hand-built invalid one is rejected."""
    wf = load_workflow(seed_examples.PARALLEL_PROCESSING)
    assert load_workflow(wf) is wf
    problems = _problems(_hand_made("w1", "missing"))
    assert problems[0]["field"] == "dependencies"
    good = _hand_made("w2")
    assert load_workflow(good) == good


def test_large_chain_loads_without_recursion() -> None:
    """A 100,000-task chain (deeper than any recursion limit) validates."""
    n = 100_000
    doc = {
        "name": "chain",
        "tasks": [
            {
                "id": f"t{i}",
                "method": "python/execute",
                "params": {"code": "result = 1"},
                "dependencies": [f"t{i - 1}"] if i else [],
            }
            for i in range(n)
        ],
    }
    wf = load_workflow(doc)
    assert wf.total_tasks == n
    assert wf.tasks[-1].dependencies == (f"t{n - 2}",)
