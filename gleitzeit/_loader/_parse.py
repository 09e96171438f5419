"""Parsing a task's fields: each checked, every problem named with its task and field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..core._methods import MethodSpec, MethodTable, describe_types, type_ok
from ..core._models import PRIORITY_NAMES, BatchSpec, RetryPolicy
from ..core._plan import has_marker
from ..core._refs import _TOKEN, Ref, RefSyntaxError, scan_refs
from ._problems import Problems, closest

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BATCH_STEP",
    "LEGACY_IGNORED",
    "WORKFLOW_KEYS",
    "TaskFields",
    "opt",
    "parse_batch",
    "parse_dependencies",
    "parse_task",
    "positive",
]

WORKFLOW_KEYS: Final = frozenset(
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
LEGACY_IGNORED: Final = frozenset({"version", "wait_for_completion", "providers"})
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


class TaskFields:
    """One task as written, its fields checked (dependencies not yet resolved)."""

    __slots__ = (
        "deps",
        "description",
        "id",
        "index",
        "isolation",
        "marked",
        "metadata",
        "method",
        "name",
        "params",
        "priority",
        "protocol",
        "refs",
        "retry",
        "tags",
        "timeout",
    )

    def __init__(
        self,
        index: int,
        tid: str,
        name: str,
        method: Any,
        protocol: Any,
        params: dict[str, Any],
        deps: list[str],
        refs: list[Ref],
        marked: bool,
    ) -> None:
        #: Its number in the document.
        self.index = index
        self.id = tid
        self.name = name
        self.method: str = method
        self.protocol: str = protocol
        self.params = params
        #: Dependencies as written (ids or names).
        self.deps = deps
        #: The ``${...}`` references in its params; ``marked``: anything to substitute.
        self.refs = refs
        self.marked = marked
        self.timeout: float | None = None
        self.retry: RetryPolicy | None = None
        self.priority = 0
        self.isolation: str | None = None
        self.description: str | None = None
        self.tags: tuple[str, ...] = ()
        self.metadata: dict[str, Any] = {}


def _is_ref(value: Any) -> bool:
    """A string that is exactly one ``${...}`` reference (a whole value)."""
    if type(value) is not str or not value.startswith("${"):
        return False
    m = _TOKEN.fullmatch(value)
    return m is not None and m.group(1) is not None


def opt(
    raw: Mapping[str, Any], key: str, types: tuple[type, ...], problems: Problems, task: str | None
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


def positive(
    raw: Mapping[str, Any], key: str, problems: Problems, task: str | None
) -> float | None:
    value = opt(raw, key, (int, float), problems, task)
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


def parse_task(
    raw: Any, index: int, problems: Problems, methods: MethodTable, source_dir: str | None
) -> TaskFields | None:
    """One task's fields, checked; None when it has neither id nor name (a problem)."""
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
                f"unknown method {method!r}{closest(method, methods)}; known "
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

    deps = parse_dependencies(raw.get("dependencies"), problems, label)
    fields = TaskFields(
        index, tid or name or "", name or tid or "", method, protocol, params, deps, refs, marked
    )
    if not _RARE_TASK_KEYS.isdisjoint(raw):  # only some tasks set optional fields
        _parse_optional_fields(raw, fields, problems, label)
    return None if tid is None and name is None else fields


def parse_dependencies(deps_raw: Any, problems: Problems, label: str) -> list[str]:
    """A task's dependencies as written: names or ids (integers become text)."""
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
    return deps


def _parse_optional_fields(
    raw: dict[str, Any], fields: TaskFields, problems: Problems, label: str
) -> None:
    """Fill in timeout, retry, priority, isolation, description, tags and metadata."""
    if "timeout" in raw:
        fields.timeout = positive(raw, "timeout", problems, label)
    fields.retry = _parse_retry(raw.get("retry"), problems, label)
    prio_raw = raw.get("priority")
    if prio_raw is not None:
        if isinstance(prio_raw, int) and not isinstance(prio_raw, bool):
            fields.priority = prio_raw
        elif isinstance(prio_raw, str) and prio_raw.lower() in PRIORITY_NAMES:
            fields.priority = PRIORITY_NAMES[prio_raw.lower()]
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
        fields.isolation = isolation
    if "description" in raw:
        fields.description = opt(raw, "description", (str,), problems, label)
    if "tags" in raw:
        tags = opt(raw, "tags", (list,), problems, label) or []
        if not all(isinstance(t, str) for t in tags):
            problems.add("'tags' must be a list of strings", label, "tags")
        else:
            fields.tags = tuple(tags)
    if "metadata" in raw:
        fields.metadata = opt(raw, "metadata", (dict,), problems, label) or {}


def _count_given(params: Mapping[str, Any], group: tuple[str, ...]) -> int:
    count = 0
    for key in group:
        if params.get(key) is not None:
            count += 1
    return count


def _check_params(
    params: Mapping[str, Any],
    spec: MethodSpec,
    problems: Problems,
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
    problems: Problems,
    label: str,
    *,
    template: bool,
) -> None:
    for key, value in params.items():
        types = accepted.get(key)
        if types is None:
            problems.add(
                f"{spec.name} takes no parameter {key!r}"
                f"{closest(str(key), accepted)}; it takes "
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


def _parse_retry(raw: Any, problems: Problems, label: str) -> RetryPolicy | None:
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
    attempts = opt(raw, "max_attempts", (int,), problems, label)
    if attempts is not None and attempts < 1:
        problems.add("'max_attempts' must be at least 1", label, "retry.max_attempts")
        attempts = None
    base = opt(raw, "base_delay", (int, float), problems, label)
    cap = opt(raw, "max_delay", (int, float), problems, label)
    for key, val in (("base_delay", base), ("max_delay", cap)):
        if val is not None and val < 0:
            problems.add(f"{key!r} must not be negative", label, f"retry.{key}")
    jitter = opt(raw, "jitter", (bool,), problems, label)
    defaults = RetryPolicy()
    return RetryPolicy(
        max_attempts=attempts if attempts is not None else defaults.max_attempts,
        base_delay=float(base) if base is not None and base >= 0 else defaults.base_delay,
        max_delay=float(cap) if cap is not None and cap >= 0 else defaults.max_delay,
        jitter=defaults.jitter if jitter is None else jitter,
    )


# --- tasks that share a shape ------------------------------------------------------
#
# Generated workflows repeat one template: the same keys, method and param keys,
# with values of the same types. Whether such a task is valid depends on its
# values in only a few places (an id that is blank, a ``${...}`` reference, the
# method's own check of a file, its dependencies), so the first task of each
# shape gets every check and the others only those. Anything unusual sends the
# whole document to the exact path (``parse_task`` for every task), which also
# words the problems.


class Bail(Exception):
    """The quick path met something it does not check itself: use the exact path."""


_CONTAINERS: Final = (dict, list, tuple)


class Shape:
    """What the tasks of one shape still need checked, each on its own."""

    __slots__ = ("check", "exact", "has_deps", "has_id", "has_name", "method", "protocol", "scan")

    def __init__(self, raw: dict[str, Any], spec: MethodSpec, params: dict[str, Any]) -> None:
        self.method: str = raw["method"]
        self.protocol = spec.protocol
        reads = spec.check_keys
        self.check = spec.check if reads is None or not reads.isdisjoint(params) else None
        self.has_id = "id" in raw
        self.has_name = "name" in raw
        deps = raw.get("dependencies")
        self.has_deps = deps is not None
        #: Read every task of this shape with ``parse_task`` (rare fields, a
        #: protocol, integer ids, a value valid only as a ``${...}`` reference).
        self.exact = (
            not _RARE_TASK_KEYS.isdisjoint(raw)
            or "protocol" in raw
            or not (deps is None or type(deps) is list)
            or any(k in raw and type(raw[k]) is not str for k in ("id", "name"))
            or _refs_only(params, spec)
        )
        #: Which params may hold ``${``: None (none: no strings), a tuple of
        #: keys (top-level strings only), or True (nested values: scan them all).
        self.scan: tuple[str, ...] | bool | None = None
        if any(type(v) in _CONTAINERS for v in params.values()):
            self.scan = True
        else:
            keys = tuple(k for k, v in params.items() if type(v) is str)
            self.scan = keys or None


def _refs_only(params: dict[str, Any], spec: MethodSpec) -> bool:
    """True if a param has the wrong type and passed as a ``${...}`` reference."""
    accepted = spec.params
    if accepted is None:
        return False
    for key, value in params.items():
        types = accepted.get(key)
        if value is not None and types is not None and not type_ok(value, types):
            return True
    return False


class Columns:
    """The tasks read into columns, their dependencies not yet resolved.

    Every task's dependencies as written are ``flat[i]`` runs of ``counts``
    (ids, most likely); tasks whose dependencies need the exact lookup (by
    name, or with references) are in ``special`` with their fields instead.
    """

    __slots__ = (
        "counts",
        "flat",
        "ids",
        "marked",
        "methods",
        "names",
        "options",
        "params",
        "protocols",
        "special",
    )

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.names: list[str] = []
        self.methods: list[str] = []
        self.protocols: list[str] = []
        self.params: list[dict[str, Any]] = []
        self.marked = bytearray()
        self.flat: list[Any] = []
        self.counts: list[int] = []
        self.special: dict[int, TaskFields] = {}
        #: Tasks that set optional fields (timeout, retry, ...).
        self.options: list[TaskFields] = []


def read_columns(raw_tasks: list[Any], methods: MethodTable, source_dir: str | None) -> Columns:
    """Check the tasks shape by shape and read them into columns.

    Raises:
        Bail: something only the exact path checks (and words) properly.
    """
    shapes: dict[tuple[Any, ...], Shape] = {}
    cols = Columns()
    ids, names, methods_col, protocols = cols.ids, cols.names, cols.methods, cols.protocols
    params_col, marked, flat, counts = cols.params, cols.marked, cols.flat, cols.counts
    for index, raw in enumerate(raw_tasks):
        if type(raw) is not dict:
            raise Bail
        params = raw.get("params")
        if params is None:
            params = raw.get("parameters")
        try:
            if type(params) is dict:
                key: tuple[Any, ...] = (
                    tuple(raw),
                    tuple(map(type, raw.values())),
                    raw.get("method"),
                    tuple(params),
                    tuple(map(type, params.values())),
                )
            else:
                key = (tuple(raw), tuple(map(type, raw.values())), raw.get("method"))
            shape = shapes.get(key)
        except TypeError:  # an unhashable method or key
            raise Bail from None
        if shape is None:
            shape = shapes[key] = _new_shape(raw, index, methods, source_dir)
        if shape.exact:
            _read_exactly(raw, index, cols, methods, source_dir)
            continue
        if shape.has_id:
            tid = raw["id"]
            if not tid.strip():
                raise Bail
            name = raw["name"] if shape.has_name else tid
            if not name.strip():
                raise Bail
        else:
            tid = name = raw["name"]
            if not name.strip():
                raise Bail
        if params is None:
            params = {}
        if shape.check is not None:
            for _problem in shape.check(params, source_dir):
                raise Bail
        scan = shape.scan
        mark = False
        if scan is not None:
            if scan is True:
                mark = has_marker(params)
            else:
                for k in scan:  # type: ignore[union-attr]
                    if "${" in params[k]:
                        mark = True
                        break
            if mark:
                try:
                    refs, mark = scan_refs(params)
                except RefSyntaxError:
                    raise Bail from None
                if refs:
                    _read_exactly(raw, index, cols, methods, source_dir)
                    continue
        ids.append(tid)
        names.append(name)
        methods_col.append(shape.method)
        protocols.append(shape.protocol)
        params_col.append(params)
        marked.append(mark)
        if shape.has_deps:
            deps = raw["dependencies"]
            flat += deps
            counts.append(len(deps))
        else:
            counts.append(0)
    return cols


def _new_shape(
    raw: dict[str, Any], index: int, methods: MethodTable, source_dir: str | None
) -> Shape:
    """Check a shape's first task in full; a shape with any problem bails."""
    scratch = Problems()
    fields = parse_task(raw, index, scratch, methods, source_dir)
    if scratch.items or fields is None:
        raise Bail
    spec = methods.get(fields.method)
    params = raw.get("params", raw.get("parameters"))
    if spec is None or not (params is None or type(params) is dict):
        raise Bail
    return Shape(raw, spec, params or {})


def _read_exactly(
    raw: dict[str, Any], index: int, cols: Columns, methods: MethodTable, source_dir: str | None
) -> None:
    """Read one task with every check (its dependencies resolved later, exactly)."""
    scratch = Problems()
    fields = parse_task(raw, index, scratch, methods, source_dir)
    if scratch.items or fields is None:
        raise Bail
    i = len(cols.ids)
    cols.ids.append(fields.id)
    cols.names.append(fields.name)
    cols.methods.append(fields.method)
    cols.protocols.append(fields.protocol)
    cols.params.append(fields.params)
    cols.marked.append(fields.marked)
    cols.counts.append(0)
    cols.special[i] = fields
    if not _RARE_TASK_KEYS.isdisjoint(raw):
        cols.options.append(fields)


#: The id of the step that gathers a batch's per-file contents.
BATCH_STEP: Final = "batch"


def parse_batch(
    doc: Mapping[str, Any], problems: Problems, methods: MethodTable, source_dir: str | None
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
        directory = opt(raw, "directory", (str,), problems, None)
        files = opt(raw, "files", (list,), problems, None) or []
        if not all(isinstance(f, str) for f in files):
            problems.add("'batch.files' must be a list of paths", None, "batch.files")
            files = []
        if directory is None and not files:
            problems.add("'batch' needs a 'directory' or a list of 'files'", None, "batch")
        spec = BatchSpec(
            directory=directory,
            pattern=opt(raw, "pattern", (str,), problems, None) or "*",
            files=tuple(files),
            recursive=bool(opt(raw, "recursive", (bool,), problems, None)),
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
            f"{closest(str(method), methods)}",
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
