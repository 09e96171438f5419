"""Loading workflow documents: YAML/JSON files, dicts and Workflow objects.

:func:`load_workflow` parses and validates in one pass and reports *every*
problem at once in a :class:`~gleitzeit.core.errors.WorkflowValidationError`
(``e.data["problems"]``: dicts with ``task``, ``field`` and ``message``).
A dependency cycle is a :class:`~gleitzeit.core.errors.CircularDependencyError`
with ``e.data["cycle"]``. All work is linear in the size of the document.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import uuid
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from ._gc import gc_paused
from .core._graph import find_cycle
from .core._methods import MethodSpec, MethodTable, describe_types, type_ok
from .core._models import PRIORITY_NAMES, BatchSpec, RetryPolicy, Task, Workflow
from .core._refs import _TOKEN, RefSyntaxError, scan_refs
from .core.errors import CircularDependencyError, WorkflowValidationError

__all__ = ["WorkflowSource", "load_workflow", "parse_workflow", "read_document"]

log = logging.getLogger("gleitzeit.loader")

WorkflowSource = str | os.PathLike[str] | Mapping[str, Any] | Workflow

_WORKFLOW_KEYS: Final = frozenset(
    {
        "name",
        "description",
        "id",
        "tasks",
        "timeout",
        "metadata",
        "type",
        "batch",
        "template",
        "protocol",
        "max_parallel_tasks",
        "mcp_servers",
    }
)
_LEGACY_IGNORED: Final = frozenset({"version", "wait_for_completion", "providers"})
_TASK_KEYS: Final = frozenset(
    {
        "name",
        "id",
        "method",
        "protocol",
        "params",
        "parameters",
        "dependencies",
        "timeout",
        "retry",
        "priority",
        "isolation",
        "description",
        "tags",
        "metadata",
    }
)
#: Optional task fields; a task with none of them takes a shorter path.
_RARE_TASK_KEYS: Final = frozenset(
    {"timeout", "retry", "priority", "isolation", "description", "tags", "metadata"}
)
_RETRY_KEYS: Final = frozenset({"max_attempts", "base_delay", "max_delay", "jitter", "backoff"})
_BATCH_KEYS: Final = frozenset({"directory", "pattern", "files", "recursive"})
_TEMPLATE_TASK_KEYS: Final = frozenset(
    {"method", "protocol", "params", "parameters", "timeout", "retry", "priority", "isolation"}
)
_ISOLATION: Final = ("process", "inline")
_MAX_LISTED: Final = 20

#: Workflows this module built (and so validated), by identity; others are re-checked.
#: (Not a WeakSet: hashing a frozen Workflow would hash every task.)
_validated: weakref.WeakValueDictionary[int, Workflow] = weakref.WeakValueDictionary()
#: The dependency indexes and "has references" flags computed while validating,
#: by workflow identity, so the engine need not compute them again.
_graphs: dict[int, tuple[list[list[int]], bytearray]] = {}


def graph_of(workflow: Workflow) -> tuple[list[list[int]], bytearray] | None:
    """Dependency indexes and reference flags of a workflow this module built, or None."""
    if _validated.get(id(workflow)) is not workflow:
        return None
    return _graphs.get(id(workflow))


class _Problems:
    """Collects validation problems; each names the task and field it concerns."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(
        self, message: str, task: str | None = None, field: str | None = None, **extra: Any
    ) -> None:
        self.items.append({"task": task, "field": field, "message": message, **extra})

    def unknown_key(self, key: Any, known: Iterable[str], task: str | None, where: str) -> None:
        hint = _closest(str(key), known)
        self.add(f"unknown field {key!r} in {where}{hint}", task, str(key))

    def raise_if_any(self, name: str | None, source: str | None) -> None:
        if not self.items:
            return
        lines = []
        for p in self.items[:_MAX_LISTED]:
            where = []
            if p["task"] is not None:
                where.append(f"task {p['task']!r}")
            if p["field"] is not None:
                where.append(f"field {p['field']!r}")
            lines.append(f"  - {', '.join(where) + ': ' if where else ''}{p['message']}")
        if len(self.items) > _MAX_LISTED:
            lines.append(f"  ... and {len(self.items) - _MAX_LISTED} more (see e.data['problems'])")
        what = f"Workflow {name!r}" if name else "The workflow"
        if source:
            what += f" ({source})"
        count = len(self.items)
        raise WorkflowValidationError(
            f"{what} has {count} problem{'s' if count != 1 else ''}; fix "
            f"{'them' if count != 1 else 'it'} and load it again:\n" + "\n".join(lines),
            data={"problems": self.items, "workflow": name, "source": source},
        )


def _closest(word: str, known: Iterable[str]) -> str:
    """A " (did you mean ...?)" hint; skipped for huge lists, where it would be slow."""
    candidates = list(known)
    if len(candidates) > 5000:
        return ""
    match = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _is_ref(value: Any) -> bool:
    """A string that is exactly one ``${...}`` reference (a whole value)."""
    if type(value) is not str or not value.startswith("${"):
        return False
    m = _TOKEN.fullmatch(value)
    return m is not None and m.group(1) is not None


# --- reading files --------------------------------------------------------------


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``.yaml``/``.yml``/``.json`` file into a dict.

    Raises:
        WorkflowValidationError: the file is missing, unreadable, empty, of an
            unknown type, not a mapping, or has a syntax error (with line and
            column in the problem).
    """
    p = Path(path)
    problems = _Problems()
    source = str(p)
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        text_given = isinstance(path, str) and ("\n" in path or path.lstrip()[:1] in ("{", "-"))
        if text_given:
            problems.add(
                "this looks like workflow text, not a file path; pass a path to a "
                ".yaml/.json file, or parse the text first (yaml.safe_load) and pass the dict"
            )
        elif p.is_dir():
            problems.add(
                f"{p} is a directory, not a workflow file; pass the path of a .yaml, "
                ".yml or .json file inside it (for a folder of inputs, use a batch)"
            )
        elif not p.exists():
            problems.add(
                f"file not found: {p.resolve()}; check the path (relative paths start at "
                f"{Path.cwd()}); workflow files end in .yaml, .yml or .json"
            )
        else:
            problems.add(
                f"unsupported file type {p.suffix or '(none)'!r}; use a .yaml, .yml or .json file"
            )
        problems.raise_if_any(None, source)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add(
            f"file not found: {p.resolve()}; check the path (relative paths start at {Path.cwd()})"
        )
    except IsADirectoryError:
        problems.add(f"{p} is a directory, not a workflow file")
    except UnicodeDecodeError as exc:
        problems.add(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        problems.add(f"cannot read the file: {exc.strerror or exc}")
    problems.raise_if_any(None, source)
    doc: Any
    if suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.add(
                f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                line=exc.lineno,
                column=exc.colno,
            )
    else:
        import yaml  # deferred: only files need it

        # libyaml's C parser when PyYAML was built with it (about 3x faster on
        # big documents); the pure-Python one otherwise. Same safe types.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            doc = yaml.load(text, Loader=loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
            reason = exc.problem or exc.context or "invalid YAML"
            problems.add(
                f"YAML syntax error at line {line}, column {col}: {reason}", line=line, column=col
            )
        except yaml.YAMLError as exc:
            problems.add(f"YAML error: {exc}")
    problems.raise_if_any(None, source)
    if doc is None:
        problems.add("the file is empty; a workflow needs at least 'name' and 'tasks'")
    elif not isinstance(doc, dict):
        problems.add(
            f"the document is a {type(doc).__name__}; a workflow must be a mapping "
            "with 'name' and 'tasks'"
        )
    problems.raise_if_any(None, source)
    return doc  # type: ignore[no-any-return]


def load_workflow(source: WorkflowSource, *, methods: MethodTable | None = None) -> Workflow:
    """Load and validate a workflow from a file path, a dict or a Workflow.

    Relative paths in task params are later resolved against the file's folder
    (kept as ``workflow.source_dir``). Methods are checked against ``methods``
    (a client's provider registry passes its own; the default is the built-in
    providers' methods).

    Raises:
        WorkflowValidationError: WORKFLOW_VALIDATION_FAILED, with every problem
            in ``e.data["problems"]``.
        CircularDependencyError: WORKFLOW_CIRCULAR_DEPENDENCY, with the cycle's
            task ids in ``e.data["cycle"]``.
    """
    obj: object = source  # callers without type checking may pass anything
    if isinstance(obj, Workflow):
        if _validated.get(id(obj)) is obj:
            return obj
        from ._serde import unstructure_workflow  # deferred: avoids an import cycle

        return parse_workflow(unstructure_workflow(obj), source_dir=obj.source_dir, methods=methods)
    if isinstance(obj, Mapping):
        return parse_workflow(obj, methods=methods)
    if isinstance(obj, (str, os.PathLike)):
        doc = read_document(obj)
        path = Path(obj)
        return parse_workflow(
            doc, source=str(path), source_dir=str(path.resolve().parent), methods=methods
        )
    problems = _Problems()
    problems.add(
        f"cannot load a workflow from a {type(obj).__name__}; pass a path to a "
        ".yaml/.json file, a dict or a Workflow"
    )
    problems.raise_if_any(None, None)
    raise AssertionError("unreachable")  # pragma: no cover


# --- parsing ---------------------------------------------------------------------


def parse_workflow(
    doc: Mapping[str, Any],
    *,
    source: str | None = None,
    source_dir: str | None = None,
    methods: MethodTable | None = None,
) -> Workflow:
    """Validate a workflow mapping (either document shape) and build a Workflow.

    See :func:`load_workflow` for the errors raised.
    """
    if methods is None:
        from ._providers import builtin_methods  # deferred: providers import more

        methods = builtin_methods()
    with gc_paused():
        return _parse_workflow(doc, source, source_dir, methods)


def _parse_workflow(
    doc: Mapping[str, Any],
    source: str | None,
    source_dir: str | None,
    methods: MethodTable,
) -> Workflow:
    problems = _Problems()
    name = doc.get("name")
    if name is None:
        problems.add("missing required field 'name'", None, "name")
    elif not isinstance(name, str) or not name.strip():
        problems.add("'name' must be a non-empty string", None, "name")
        name = None
    for key in doc:
        if key in _LEGACY_IGNORED:
            log.debug("ignoring workflow field %r (accepted from the earlier gleitzeit)", key)
        elif key not in _WORKFLOW_KEYS:
            problems.unknown_key(key, _WORKFLOW_KEYS, None, "the workflow")
    wf_id = _opt(doc, "id", (str,), problems, None) or uuid.uuid4().hex
    description = _opt(doc, "description", (str,), problems, None)
    timeout = _positive(doc, "timeout", problems, None)
    metadata = _opt(doc, "metadata", (dict,), problems, None) or {}
    max_parallel = _opt(doc, "max_parallel_tasks", (int,), problems, None)
    if max_parallel is not None and max_parallel < 1:
        problems.add("'max_parallel_tasks' must be at least 1", None, "max_parallel_tasks")
        max_parallel = None

    mcp_servers = doc.get("mcp_servers")
    if mcp_servers is not None:
        methods = _with_mcp_servers(mcp_servers, methods, problems)
    is_batch = doc.get("type") == "batch" or "batch" in doc
    if "type" in doc and doc["type"] not in ("batch", "workflow"):
        problems.add(f"'type' must be 'batch' (or left out), not {doc['type']!r}", None, "type")
    batch: BatchSpec | None = None
    template: dict[str, Any] | None = None
    tasks: tuple[Task, ...] = ()
    graph: tuple[list[list[int]], bytearray] | None = None
    if is_batch:
        batch, template = _parse_batch(doc, problems, methods, source_dir)
        if "tasks" in doc:  # steps after the files: they may use ${batch.result}
            tasks = _parse_batch_steps(doc, problems, methods, source_dir)
    else:
        for key in ("batch", "template", "protocol"):
            if key in doc:
                problems.add(f"{key!r} belongs to batch documents (add 'type: batch')", None, key)
        tasks, graph = _parse_tasks(doc, problems, methods, source_dir)
    problems.raise_if_any(name, source)
    workflow = Workflow(
        id=str(wf_id),
        name=str(name),
        tasks=tasks,
        description=description,
        timeout=timeout,
        max_concurrent=max_parallel,
        metadata=dict(metadata),
        source_dir=source_dir,
        batch=batch,
        template=template,
        mcp_servers=dict(mcp_servers) if isinstance(mcp_servers, dict) else {},
    )
    _validated[id(workflow)] = workflow
    if graph is not None:
        _graphs[id(workflow)] = graph
        weakref.finalize(workflow, _graphs.pop, id(workflow), None)
    return workflow


def _with_mcp_servers(raw: Any, methods: MethodTable, problems: _Problems) -> MethodTable:
    """Check a workflow's own ``mcp_servers`` and add their ``mcp/<name>/*`` methods."""
    from ._providers.mcp import check_server_config  # deferred: only MCP users need it

    if not isinstance(raw, dict):
        problems.add(
            "'mcp_servers' must map server names to {command: [...]} or {url: ...}",
            None,
            "mcp_servers",
        )
        return methods
    specs = []
    for name, config in raw.items():
        found = check_server_config(name, config)
        for message in found:
            problems.add(message, None, f"mcp_servers.{name}")
        if not found and methods.get(f"mcp/{name}/x") is None:
            specs.append(MethodSpec(f"mcp/{name}/*", description=f"Tools of {name!r}."))
    return methods.extended(specs) if specs else methods


def _opt(
    raw: Mapping[str, Any], key: str, types: tuple[type, ...], problems: _Problems, task: str | None
) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    if not type_ok(value, types):
        problems.add(
            f"{key!r} must be {describe_types(types)}, not {type(value).__name__} {value!r:.60}",
            task,
            key,
        )
        return None
    return value


def _positive(
    raw: Mapping[str, Any], key: str, problems: _Problems, task: str | None
) -> float | None:
    value = _opt(raw, key, (int, float), problems, task)
    if value is not None and value <= 0:
        problems.add(f"{key!r} must be a positive number of seconds, not {value!r}", task, key)
        return None
    return None if value is None else float(value)


def _ident(value: Any) -> str | None:
    """Ids and names are strings; integers (from YAML ``id: 1``) are accepted."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _parse_tasks(
    doc: Mapping[str, Any], problems: _Problems, methods: MethodTable, source_dir: str | None
) -> tuple[tuple[Task, ...], tuple[list[list[int]], bytearray] | None]:
    raw_tasks = doc.get("tasks")
    if raw_tasks is None:
        problems.add("missing required field 'tasks' (a list of tasks)", None, "tasks")
        return (), None
    if not isinstance(raw_tasks, list):
        problems.add(
            f"'tasks' must be a list of tasks, not {type(raw_tasks).__name__}", None, "tasks"
        )
        return (), None
    if not raw_tasks:
        problems.add("'tasks' is empty; a workflow needs at least one task", None, "tasks")
        return (), None

    parsed: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_tasks):
        fields = _parse_task(raw, index, problems, methods, source_dir)
        if fields is not None:
            parsed.append(fields)

    by_id: dict[str, int] = {}
    by_name: dict[str, int | None] = {}  # None: the name is shared (ambiguous)
    for i, f in enumerate(parsed):
        tid = f["id"]
        if tid in by_id:
            problems.add(
                f"duplicate task id {tid!r} (also task number "
                f"{parsed[by_id[tid]]['_index'] + 1}); give each task its own id",
                f["name"],
                "id",
            )
        else:
            by_id[tid] = i
        by_name[f["name"]] = None if f["name"] in by_name else i

    def lookup(ref: str) -> int | None:
        i = by_id.get(ref)
        return by_name.get(ref) if i is None else i

    deps_idx: list[list[int]] = []
    for f in parsed:
        label = f["name"]
        # Fast path: dependencies named by id, each once, and no references.
        given = f["deps"]
        if not f["refs"]:
            found: list[int] | None = []
            for d in given:
                j = by_id.get(d)
                if j is None:
                    found = None
                    break
                found.append(j)  # type: ignore[union-attr]
            if found is not None and (len(found) < 2 or len(set(found)) == len(found)):
                deps_idx.append(found)
                f["dep_ids"] = tuple(given)
                continue
        f["dep_ids"] = None
        seen: dict[int, None] = {}
        for dep in f["deps"]:
            j = lookup(dep)
            if j is None:
                if dep in by_name:
                    problems.add(
                        f"dependency {dep!r} is ambiguous: several tasks have "
                        "that name; depend on an id instead",
                        label,
                        "dependencies",
                    )
                else:
                    problems.add(
                        f"dependency {dep!r} names no task in this workflow"
                        f"{_closest(dep, [*by_id, *by_name])}",
                        label,
                        "dependencies",
                    )
            else:
                seen[j] = None
        for ref in f["refs"]:
            j = lookup(ref.task)
            if j is None:
                problems.add(
                    f"reference {ref.text} names no task {ref.task!r} in this "
                    f"workflow{_closest(ref.task, [*by_id, *by_name])}; to pass the text "
                    f"{ref.text} itself, escape it as ${ref.text}",
                    label,
                    "params",
                )
            else:
                seen[j] = None
        deps_idx.append(list(seen))
    if problems.items:
        return (), None

    cycle = find_cycle(deps_idx)
    if cycle is not None:
        ids = [parsed[i]["id"] for i in cycle]
        shown = " -> ".join(repr(t) for t in [*ids, ids[0]])
        raise CircularDependencyError(
            f"Workflow {doc.get('name')!r} has a dependency cycle: {shown} "
            "(each depends on the next); remove one of these dependencies.",
            data={"cycle": ids, "workflow": doc.get("name")},
        )
    tasks = tuple(
        Task(
            id=f["id"],
            name=f["name"],
            method=f["method"],
            protocol=f["protocol"],
            params=f["params"],
            dependencies=f["dep_ids"]
            if f["dep_ids"] is not None
            else tuple(parsed[j]["id"] for j in deps),
            timeout=f["timeout"],
            retry=f["retry"],
            priority=f["priority"],
            isolation=f["isolation"],
            description=f["description"],
            tags=f["tags"],
            metadata=f["metadata"],
        )
        for f, deps in zip(parsed, deps_idx, strict=True)
    )
    return tasks, (deps_idx, bytearray(f["marked"] for f in parsed))


def _parse_task(
    raw: Any, index: int, problems: _Problems, methods: MethodTable, source_dir: str | None
) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        problems.add(
            f"task number {index + 1} must be a mapping, not {type(raw).__name__}",
            f"#{index + 1}",
            None,
        )
        return None
    raw_id, raw_name = raw.get("id"), raw.get("name")
    tid = raw_id if type(raw_id) is str and raw_id.strip() else _ident(raw_id)
    name = raw_name if type(raw_name) is str and raw_name.strip() else _ident(raw_name)
    label = name or tid or f"#{index + 1}"
    if tid is None and name is None:
        problems.add("a task needs a 'name' (or an 'id')", label, "name")
    for key, value, ident in (("id", raw_id, tid), ("name", raw_name, name)):
        if value is not None and ident is None:
            problems.add(f"{key!r} must be a non-empty string", label, key)
    if not _TASK_KEYS.issuperset(raw):
        for key in raw:
            if key not in _TASK_KEYS:
                problems.unknown_key(key, _TASK_KEYS, label, "the task")

    method = raw.get("method")
    spec: MethodSpec | None = None
    if method is None:
        problems.add(
            "missing required field 'method' (e.g. 'python/execute' or 'llm/chat')", label, "method"
        )
    elif not isinstance(method, str):
        problems.add("'method' must be a string", label, "method")
    else:
        spec = methods.get(method)
        if spec is None:
            problems.add(
                f"unknown method {method!r}{_closest(method, methods)}; known "
                f"methods: {', '.join(sorted(methods))}",
                label,
                "method",
            )
    protocol = raw.get("protocol")
    if spec is not None:
        if protocol is not None and protocol != spec.protocol:
            problems.add(
                f"protocol {protocol!r} does not match method {method!r}; use "
                f"{spec.protocol!r} or leave 'protocol' out",
                label,
                "protocol",
            )
        protocol = spec.protocol

    params: Any = raw.get("params")
    if "params" in raw and "parameters" in raw:
        problems.add("give 'params' or its alias 'parameters', not both", label, "params")
    elif params is None:
        params = raw.get("parameters")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        problems.add(f"'params' must be a mapping, not {type(params).__name__}", label, "params")
        params = {}
    if spec is not None:
        _check_params(params, spec, problems, label, source_dir, template=False)

    refs: list[Any] = []
    marked = False
    try:
        refs, marked = scan_refs(params)
    except RefSyntaxError as exc:
        problems.add(str(exc), label, "params")

    deps_raw = raw.get("dependencies")
    deps: list[str] = []
    if deps_raw is not None:
        if isinstance(deps_raw, (str, int)) and not isinstance(deps_raw, bool):
            deps_raw = [deps_raw]
        if not isinstance(deps_raw, list):
            problems.add(
                "'dependencies' must be a list of task names or ids", label, "dependencies"
            )
        else:
            for dep in deps_raw:
                d = dep if type(dep) is str and dep.strip() else _ident(dep)
                if d is None:
                    problems.add(
                        f"dependency {dep!r} must be a task name or id", label, "dependencies"
                    )
                else:
                    deps.append(d)

    fields: dict[str, Any] = {
        "_index": index,
        "id": tid or name,
        "name": name or tid,
        "method": method,
        "protocol": protocol,
        "params": params,
        "deps": deps,
        "refs": refs,
        "marked": marked,
        "timeout": None,
        "retry": None,
        "priority": 0,
        "isolation": None,
        "description": None,
        "tags": (),
        "metadata": {},
    }
    if not _RARE_TASK_KEYS.isdisjoint(raw):  # only some tasks set optional fields
        _parse_optional_fields(raw, fields, problems, label)
    return None if tid is None and name is None else fields


def _parse_optional_fields(
    raw: dict[str, Any], fields: dict[str, Any], problems: _Problems, label: str
) -> None:
    """Fill in timeout, retry, priority, isolation, description, tags and metadata."""
    if "timeout" in raw:
        fields["timeout"] = _positive(raw, "timeout", problems, label)
    fields["retry"] = _parse_retry(raw.get("retry"), problems, label)
    prio_raw = raw.get("priority")
    if prio_raw is not None:
        if isinstance(prio_raw, int) and not isinstance(prio_raw, bool):
            fields["priority"] = prio_raw
        elif isinstance(prio_raw, str) and prio_raw.lower() in PRIORITY_NAMES:
            fields["priority"] = PRIORITY_NAMES[prio_raw.lower()]
        else:
            problems.add(
                f"'priority' must be an integer (higher runs first) or one of "
                f"{', '.join(PRIORITY_NAMES)}, not {prio_raw!r}",
                label,
                "priority",
            )
    isolation = raw.get("isolation")
    if isolation is not None and isolation not in _ISOLATION:
        problems.add(
            f"'isolation' must be 'process' or 'inline', not {isolation!r}", label, "isolation"
        )
    else:
        fields["isolation"] = isolation
    if "description" in raw:
        fields["description"] = _opt(raw, "description", (str,), problems, label)
    if "tags" in raw:
        tags = _opt(raw, "tags", (list,), problems, label) or []
        if not all(isinstance(t, str) for t in tags):
            problems.add("'tags' must be a list of strings", label, "tags")
        else:
            fields["tags"] = tuple(tags)
    if "metadata" in raw:
        fields["metadata"] = _opt(raw, "metadata", (dict,), problems, label) or {}


def _count_given(params: Mapping[str, Any], group: tuple[str, ...]) -> int:
    count = 0
    for key in group:
        if params.get(key) is not None:
            count += 1
    return count


def _check_params(
    params: Mapping[str, Any],
    spec: MethodSpec,
    problems: _Problems,
    label: str,
    source_dir: str | None,
    *,
    template: bool,
) -> None:
    """Check param names and types against the method's spec, then its own check."""
    if spec.params is not None:  # None: any params (the provider checks them before the run)
        _check_declared(params, spec, spec.params, problems, label, template=template)
    if spec.check is not None:
        for field, message in spec.check(params, source_dir):
            problems.add(message, label, field)


def _check_declared(
    params: Mapping[str, Any],
    spec: MethodSpec,
    accepted: dict[str, tuple[type, ...]],
    problems: _Problems,
    label: str,
    *,
    template: bool,
) -> None:
    for key, value in params.items():
        types = accepted.get(key)
        if types is None:
            problems.add(
                f"{spec.name} takes no parameter {key!r}"
                f"{_closest(str(key), accepted)}; it takes "
                f"{', '.join(accepted)}",
                label,
                f"params.{key}",
            )
        elif value is not None and not type_ok(value, types) and not _is_ref(value):
            problems.add(
                f"parameter {key!r} must be {describe_types(types)}, not {type(value).__name__}",
                label,
                f"params.{key}",
            )
    for group in spec.one_of:
        count = _count_given(params, group)
        if count > 1:
            problems.add(
                f"{spec.name} takes one of {' or '.join(map(repr, group))}, not both",
                label,
                "params",
            )
        elif count == 0 and not template:
            problems.add(f"{spec.name} needs {' or '.join(map(repr, group))}", label, "params")
    if not template:
        for group in spec.any_of:
            if all(params.get(k) is None for k in group):
                problems.add(f"{spec.name} needs {' or '.join(map(repr, group))}", label, "params")
    for group in spec.at_most_one:
        if _count_given(params, group) > 1:
            problems.add(
                f"{' and '.join(map(repr, group))} are aliases; give only one", label, "params"
            )


def _parse_retry(raw: Any, problems: _Problems, label: str) -> RetryPolicy | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.add(
            "'retry' must be a mapping with 'max_attempts', 'base_delay' and 'max_delay'",
            label,
            "retry",
        )
        return None
    for key in raw:
        if key not in _RETRY_KEYS:
            problems.unknown_key(key, _RETRY_KEYS, label, "'retry'")
    attempts = _opt(raw, "max_attempts", (int,), problems, label)
    if attempts is not None and attempts < 1:
        problems.add("'max_attempts' must be at least 1", label, "retry.max_attempts")
        attempts = None
    base = _opt(raw, "base_delay", (int, float), problems, label)
    cap = _opt(raw, "max_delay", (int, float), problems, label)
    for key, val in (("base_delay", base), ("max_delay", cap)):
        if val is not None and val < 0:
            problems.add(f"{key!r} must not be negative", label, f"retry.{key}")
    jitter = _opt(raw, "jitter", (bool,), problems, label)
    defaults = RetryPolicy()
    return RetryPolicy(
        max_attempts=attempts if attempts is not None else defaults.max_attempts,
        base_delay=float(base) if base is not None and base >= 0 else defaults.base_delay,
        max_delay=float(cap) if cap is not None and cap >= 0 else defaults.max_delay,
        jitter=defaults.jitter if jitter is None else jitter,
    )


#: The id of the step that gathers a batch's per-file contents.
BATCH_STEP: Final = "batch"


def _parse_batch_steps(
    doc: Mapping[str, Any], problems: _Problems, methods: MethodTable, source_dir: str | None
) -> tuple[Task, ...]:
    """A batch document's own steps, checked beside the ``batch`` step they may use."""
    raw = doc.get("tasks")
    if isinstance(raw, list):
        raw = [*raw, {"id": BATCH_STEP, "method": "batch/collect", "params": {"entries": {}}}]
    tasks, _ = _parse_tasks({**doc, "tasks": raw}, problems, methods, source_dir)
    return tuple(t for t in tasks if t.id != BATCH_STEP or t.method != "batch/collect")


def _parse_batch(
    doc: Mapping[str, Any], problems: _Problems, methods: MethodTable, source_dir: str | None
) -> tuple[BatchSpec | None, dict[str, Any] | None]:
    raw = doc.get("batch")
    spec: BatchSpec | None = None
    if not isinstance(raw, dict):
        problems.add(
            "a batch document needs 'batch: {directory: ..., pattern: ...}' (or 'files: [...]')",
            None,
            "batch",
        )
    else:
        for key in raw:
            if key not in _BATCH_KEYS:
                problems.unknown_key(key, _BATCH_KEYS, None, "'batch'")
        directory = _opt(raw, "directory", (str,), problems, None)
        files = _opt(raw, "files", (list,), problems, None) or []
        if not all(isinstance(f, str) for f in files):
            problems.add("'batch.files' must be a list of paths", None, "batch.files")
            files = []
        if directory is None and not files:
            problems.add("'batch' needs a 'directory' or a list of 'files'", None, "batch")
        spec = BatchSpec(
            directory=directory,
            pattern=_opt(raw, "pattern", (str,), problems, None) or "*",
            files=tuple(files),
            recursive=bool(_opt(raw, "recursive", (bool,), problems, None)),
        )
    template = doc.get("template")
    if not isinstance(template, dict):
        problems.add(
            "a batch document needs a 'template' mapping with a 'method'", None, "template"
        )
        return spec, None
    method = template.get("method")
    method_spec = methods.get(method) if isinstance(method, str) else None
    if method_spec is None:
        problems.add(
            f"'template.method' must be a known method, not {method!r}"
            f"{_closest(str(method), methods)}",
            "template",
            "method",
        )
        return spec, dict(template)
    protocol = doc.get("protocol") or template.get("protocol")
    if protocol is not None and protocol != method_spec.protocol:
        problems.add(
            f"protocol {protocol!r} does not match method {method!r}; use {method_spec.protocol!r}",
            "template",
            "protocol",
        )
    nested = template.get("params", template.get("parameters"))
    params = (
        dict(nested)
        if isinstance(nested, dict)
        else {k: v for k, v in template.items() if k not in _TEMPLATE_TASK_KEYS}
    )
    _check_params(params, method_spec, problems, "template", source_dir, template=True)
    return spec, dict(template)
