"""The one cattrs converter that (un)structures every gleitzeit model."""

from __future__ import annotations

from array import array
from itertools import accumulate, pairwise
from typing import TYPE_CHECKING, Any, Final

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .core._events import Event, EventKind
from .core._models import RetryPolicy, Task, Workflow
from .core._plan import Plan, aliases_of, has_marker

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "COMPLETION_VERSION",
    "RECORD_VERSION",
    "compact_workflow",
    "converter",
    "event_from_record",
    "event_to_record",
    "structure_compact",
    "structure_workflow",
    "unstructure_workflow",
]

#: The version written as ``v`` into every persisted record.
RECORD_VERSION = 1
#: The version of a compact completion record (the journal's
#: ``{"v": 2, "w": workflow_id, "at": at, "c": [task_id, attempt, started_at, result]}``).
COMPLETION_VERSION = 2

#: Unstructures to JSON-ready dicts (enums as their values, tuples as lists).
converter = cattrs.Converter(omit_if_default=True)


def _as_is(value: Any, _type: Any = None) -> Any:
    return value


# Task params and metadata are JSON-like already (they came from YAML/JSON, or
# json.dumps turns what is not into text): copying them cost most of writing a
# workflow definition.
_AS_IS = override(unstruct_hook=_as_is)
converter.register_unstructure_hook(
    Task,
    make_dict_unstructure_fn(
        Task, converter, _cattrs_omit_if_default=True, params=_AS_IS, metadata=_AS_IS
    ),
)
_unstructure_task = converter.get_unstructure_hook(Task)


_TASK_FIELDS = {f.name: f.type for f in attrs.fields(Task)}
_unstructure_timeout = converter.get_unstructure_hook(_TASK_FIELDS["timeout"])
_unstructure_retry = converter.get_unstructure_hook(_TASK_FIELDS["retry"])
_unstructure_tags = converter.get_unstructure_hook(_TASK_FIELDS["tags"])


def _unstructure_tasks(tasks: Sequence[Task], _type: Any = None) -> list[dict[str, Any]]:
    """A workflow's tasks as dicts; a plan's straight from its columns (no Task made).

    The records are the ones the Task hook writes (same keys, in the same
    order, defaults left out).
    """
    if not isinstance(tasks, Plan):
        return [_unstructure_task(t) for t in tasks]
    ids, names, methods, protocols, params = (
        tasks.ids,
        tasks.names,
        tasks.methods,
        tasks.protocols,
        tasks.params,
    )
    start, index = tasks.dep_start, tasks.dep_index
    timeouts, retries, priorities = tasks.timeouts, tasks.retries, tasks.priorities
    isolations, descriptions, tags, metadata = (
        tasks.isolations,
        tasks.descriptions,
        tasks.tags,
        tasks.metadata,
    )
    # The tasks that set an optional field (most set none).
    rare = {*timeouts, *retries, *isolations, *descriptions, *tags, *metadata}
    if priorities is not None:
        rare.update(i for i, p in enumerate(priorities) if p)
    out: list[dict[str, Any]] = []
    for i in range(len(ids)):
        record: dict[str, Any] = {
            "id": ids[i],
            "name": names[i],
            "method": methods[i],
            "protocol": protocols[i],
        }
        if params[i]:
            record["params"] = params[i]
        lo, hi = start[i], start[i + 1]
        if lo != hi:
            deps = [ids[j] for j in index[lo:hi]]
            record["dependencies"] = deps if len(deps) == 1 else list(dict.fromkeys(deps))
        if i in rare:
            value: Any = timeouts.get(i)
            if value is not None:
                record["timeout"] = _unstructure_timeout(value)
            value = retries.get(i)
            if value is not None:
                record["retry"] = _unstructure_retry(value)
            if priorities is not None and priorities[i]:
                record["priority"] = priorities[i]
            value = isolations.get(i)
            if value is not None:
                record["isolation"] = value
            value = descriptions.get(i)
            if value is not None:
                record["description"] = value
            value = tags.get(i)
            if value:
                record["tags"] = _unstructure_tags(value)
            value = metadata.get(i)
            if value:
                record["metadata"] = value
        out.append(record)
    return out


converter.register_unstructure_hook(
    Workflow,
    make_dict_unstructure_fn(
        Workflow,
        converter,
        _cattrs_omit_if_default=True,
        tasks=override(unstruct_hook=_unstructure_tasks),
        metadata=_AS_IS,
        template=_AS_IS,
        mcp_servers=_AS_IS,
    ),
)
# --- reading a workflow's tasks back: straight into a plan -------------------

#: The keys of a task record that most tasks write; the rest are optional fields.
_COMMON_KEYS: Final = frozenset({"id", "name", "method", "protocol", "params", "dependencies"})
_MISSING: Final = object()
_TASKS_TYPE = attrs.fields(Workflow).tasks.type
_structure_task_records = converter.get_structure_hook(_TASKS_TYPE)  # cattrs' own
_structure_retry = converter.get_structure_hook(RetryPolicy)


class _Odd(Exception):
    """Task records the plan builder leaves to cattrs (which reports what is wrong)."""


def _structure_tasks(records: Any, type_: Any) -> Sequence[Task]:
    """Stored task records as a plan; anything irregular goes through cattrs' Task hook."""
    if type(records) is list and records:
        try:
            return _plan_of(records)
        except _Odd:
            pass
    return _structure_task_records(records, type_)  # type: ignore[no-any-return]


def _plan_of(records: list[Any]) -> Plan:
    """The plan of task records as :func:`_unstructure_tasks` writes them (no Task made).

    Takes only what cattrs would structure to the same tasks: str ids, names,
    methods and protocols; a dict of params; a list of dependencies that name
    task ids, each once; unique ids; optional fields of their own types.

    Reference syntax is not parsed again (a stored definition's was checked
    when it was loaded or planned); ``needs_subst`` is whether ``${`` occurs.

    Raises:
        _Odd: anything else (a missing or mistyped field, an unknown key, a
            status, a dangling or repeated dependency, a repeated id).
    """
    ids: list[str] = []
    names: list[str] = []
    methods: list[str] = []
    protocols: list[str] = []
    params_col: list[dict[str, Any]] = []
    marked = bytearray()
    flat: list[Any] = []
    counts: list[int] = []
    rare: list[int] = []
    for i, record in enumerate(records):
        if type(record) is not dict:
            raise _Odd
        try:
            tid, name, method, protocol = (
                record["id"],
                record["name"],
                record["method"],
                record["protocol"],
            )
        except KeyError:
            raise _Odd from None
        if not (
            type(tid) is str and type(name) is str and type(method) is str and type(protocol) is str
        ):
            raise _Odd
        size = 4
        params = record.get("params", _MISSING)
        if params is _MISSING:
            params = {}
        elif type(params) is dict:
            size += 1
        else:
            raise _Odd
        deps = record.get("dependencies", _MISSING)
        if deps is _MISSING:
            counts.append(0)
        elif type(deps) is list:
            size += 1
            count = len(deps)
            if count > 1:
                try:
                    if len(set(deps)) != count:
                        raise _Odd  # a repeated dependency: the Task keeps it, a plan would not
                except TypeError:
                    raise _Odd from None
            flat += deps
            counts.append(count)
        else:
            raise _Odd
        if len(record) != size:
            rare.append(i)
        mark = False
        for value in params.values():
            if type(value) is str:
                if "${" in value:
                    mark = True
                    break
            elif isinstance(value, (dict, list)) and has_marker(value):
                mark = True
                break
        ids.append(tid)
        names.append(name)
        methods.append(method)
        protocols.append(protocol)
        params_col.append(params)
        marked.append(mark)
    id_col = tuple(ids)
    index = dict(zip(id_col, range(len(id_col)), strict=True))
    if len(index) != len(id_col):
        raise _Odd  # a repeated id
    try:
        dep_index = array("q", map(index.__getitem__, flat))
    except (KeyError, TypeError):
        raise _Odd from None  # a dependency names no task id
    dep_start = array("q", [0])
    dep_start.extend(accumulate(counts))
    name_col = id_col if names == ids else tuple(names)
    options = _options(records, rare) if rare else None
    return Plan(
        ids=id_col,
        names=name_col,
        methods=tuple(methods),
        protocols=tuple(protocols),
        params=tuple(params_col),
        dep_start=dep_start,
        dep_index=dep_index,
        needs_subst=bytes(marked),
        by_id=index,
        aliases=aliases_of(id_col, name_col),
        **(options or {}),
    )


def _options(records: list[Any], rare: list[int]) -> dict[str, Any]:
    """The optional fields of the tasks ``rare``, as Plan keyword arguments.

    Raises:
        _Odd: a field of another type than cattrs structures as is, or a key
            that is no optional field (``status`` included).
    """
    timeouts: dict[int, float] = {}
    retries: dict[int, RetryPolicy] = {}
    isolations: dict[int, str] = {}
    descriptions: dict[int, str] = {}
    tags: dict[int, tuple[str, ...]] = {}
    metadata: dict[int, dict[str, Any]] = {}
    priorities: list[int] | None = None
    for i in rare:
        for key, value in records[i].items():
            if key in _COMMON_KEYS:
                continue
            kind = type(value)
            if key == "timeout":
                if kind is float or kind is int:
                    timeouts[i] = float(value)
                elif value is not None:
                    raise _Odd
            elif key == "retry":
                if kind is dict:
                    try:
                        retries[i] = _structure_retry(value, RetryPolicy)
                    except Exception:
                        raise _Odd from None
                elif value is not None:
                    raise _Odd
            elif key == "priority":
                if kind is not int:
                    raise _Odd
                if value:
                    if priorities is None:
                        priorities = [0] * len(records)
                    priorities[i] = value
            elif key == "isolation":
                if kind is str:
                    isolations[i] = value
                elif value is not None:
                    raise _Odd
            elif key == "description":
                if kind is str:
                    descriptions[i] = value
                elif value is not None:
                    raise _Odd
            elif key == "tags":
                if kind is not list or not all(type(tag) is str for tag in value):
                    raise _Odd
                if value:
                    tags[i] = tuple(value)
            elif key == "metadata":
                if kind is not dict:
                    raise _Odd
                if value:
                    metadata[i] = value
            else:
                raise _Odd
    return {
        "priorities": None if priorities is None else tuple(priorities),
        "timeouts": timeouts,
        "retries": retries,
        "isolations": isolations,
        "descriptions": descriptions,
        "tags": tags,
        "metadata": metadata,
    }


converter.register_structure_hook(
    Workflow,
    make_dict_structure_fn(Workflow, converter, tasks=override(struct_hook=_structure_tasks)),
)

# (Registered after Task and Workflow: the generated hook captures theirs.)
# An event's result and error are JSON-ready already (providers return
# JSON-safe results; errors come from error_to_dict): walking them again on
# every journal line cost ~90% of the encoding.
converter.register_unstructure_hook(
    Event,
    make_dict_unstructure_fn(
        Event,
        converter,
        _cattrs_omit_if_default=True,
        result=_AS_IS,
        error=_AS_IS,
    ),
)
converter.register_structure_hook(
    Event,
    make_dict_structure_fn(
        Event,
        converter,
        result=override(struct_hook=_as_is),
        error=override(struct_hook=_as_is),
    ),
)


def unstructure_workflow(workflow: Workflow) -> dict[str, Any]:
    """A JSON-ready dict of ``workflow`` that :func:`structure_workflow` reads back."""
    return converter.unstructure(workflow)  # type: ignore[no-any-return]


def structure_workflow(data: dict[str, Any]) -> Workflow:
    """Rebuild a Workflow from :func:`unstructure_workflow`'s output.

    Its tasks come back as a :class:`~gleitzeit.core._plan.Plan` built from the
    records (as a loaded workflow's are); records that are not as this module
    writes them are structured by cattrs into Task objects, as they always were.

    Raises:
        cattrs.BaseValidationError: a malformed definition.
    """
    return converter.structure(data, Workflow)


# --- a compact definition: the plan in columns ----------------------------------

#: The version of a compact definition's ``plan`` (``v``).
COMPACT_VERSION: Final = 1
#: At most this many distinct values make a column of indexes into them.
_FEW: Final = 32


def _column(values: Sequence[Any]) -> Any:
    """A column of strings: ``{"all": v}``, ``{"values": [...], "at": [...]}`` or a list."""
    distinct = dict.fromkeys(values)
    if len(distinct) == 1:
        return {"all": values[0]}
    if len(distinct) > _FEW:
        return list(values)
    number = {v: k for k, v in enumerate(distinct)}
    return {"values": list(distinct), "at": [number[v] for v in values]}


def _uncolumn(column: Any, n: int) -> tuple[str, ...]:
    """The strings of a :func:`_column` of ``n`` tasks.

    Raises:
        ValueError: not such a column.
    """
    if type(column) is list:
        values = tuple(column)
    elif type(column) is dict and "all" in column:
        values = (column["all"],) * n
    elif type(column) is dict:
        table = column["values"]
        values = tuple(table[k] for k in column["at"])
    else:
        raise ValueError(f"not a column: {type(column).__name__}")
    if len(values) != n or not all(type(v) is str for v in values):
        raise ValueError("a column of another length than the tasks, or not of strings")
    return values


def _sparse(values: Mapping[int, Any], unstructure: Any = None) -> dict[str, Any]:
    """An optional field's values by task number (JSON keys are strings)."""
    if unstructure is None:
        return {str(i): v for i, v in values.items()}
    return {str(i): unstructure(v) for i, v in values.items()}


def compact_workflow(workflow: Workflow) -> dict[str, Any]:
    """A JSON-ready dict of ``workflow`` with its tasks as the plan's columns.

    What :func:`unstructure_workflow` writes, but with ``plan`` (columns: ids,
    methods, params, dependencies as task numbers, the optional fields by task
    number) instead of one record per task: for a big workflow about a third
    of the JSON, written and read back about four times as fast. The Redis
    store keeps definitions this way (every process joining a run reads one).
    :func:`structure_compact` reads it back.
    """
    plan = Plan.from_tasks(workflow.tasks)
    data: dict[str, Any] = converter.unstructure(attrs.evolve(workflow, tasks=()))
    data.pop("tasks", None)
    columns: dict[str, Any] = {
        "v": COMPACT_VERSION,
        "ids": list(plan.ids),
        "methods": _column(plan.methods) if plan.ids else [],
        "protocols": _column(plan.protocols) if plan.ids else [],
        "params": list(plan.params),
    }
    if plan.names is not plan.ids and plan.names != plan.ids:
        columns["names"] = list(plan.names)
    if plan.dep_index:
        columns["dep_start"] = plan.dep_start.tolist()
        columns["dep_index"] = plan.dep_index.tolist()
    if plan.priorities is not None:
        columns["priorities"] = list(plan.priorities)
    for key, values, unstructure in (
        ("timeouts", plan.timeouts, None),
        ("retries", plan.retries, converter.unstructure),
        ("isolations", plan.isolations, None),
        ("descriptions", plan.descriptions, None),
        ("tags", plan.tags, list),
        ("metadata", plan.metadata, None),
    ):
        if values:
            columns[key] = _sparse(values, unstructure)
    data["plan"] = columns
    return data


def structure_compact(data: dict[str, Any]) -> Workflow:
    """Rebuild a Workflow from :func:`compact_workflow`'s output (its tasks a plan).

    The other fields go through cattrs as in :func:`structure_workflow`; the
    columns are checked for their types and lengths, dependencies for naming
    tasks, ids for being unique. Reference syntax is not parsed again (it was
    when the workflow was loaded); a task needs substitution if ``${`` occurs
    in its params.

    Raises:
        ValueError: malformed columns.
        cattrs.BaseValidationError: malformed other fields.
    """
    rest = {k: v for k, v in data.items() if k != "plan"}
    workflow = converter.structure(rest, Workflow)
    try:
        plan = _plan_of_columns(data["plan"])
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"malformed plan columns: {exc!r}") from None
    return attrs.evolve(workflow, tasks=plan)


def _plan_of_columns(columns: dict[str, Any]) -> Plan:
    if columns.get("v") != COMPACT_VERSION:
        raise ValueError(f"unknown plan columns version {columns.get('v')!r}")
    ids = tuple(columns["ids"])
    n = len(ids)
    if not all(type(tid) is str for tid in ids):
        raise ValueError("task ids must be strings")
    by_id = dict(zip(ids, range(n), strict=True))
    if len(by_id) != n:
        raise ValueError("task ids must be unique")
    names = _uncolumn(columns["names"], n) if "names" in columns else ids
    params = tuple(columns["params"])
    if len(params) != n or not all(type(p) is dict for p in params):
        raise ValueError("params must be one dict per task")
    if "dep_start" in columns:
        dep_start = array("q", columns["dep_start"])
        dep_index = array("q", columns["dep_index"])
        if (
            len(dep_start) != n + 1
            or dep_start[0] != 0
            or dep_start[-1] != len(dep_index)
            or any(a > b for a, b in pairwise(dep_start))
            or (dep_index and not 0 <= min(dep_index) <= max(dep_index) < n)
        ):
            raise ValueError("dependencies must be task numbers, in order")
    else:
        dep_start, dep_index = array("q", bytes(8 * (n + 1))), array("q")
    priorities = columns.get("priorities")
    if priorities is not None and (
        len(priorities) != n or not all(type(p) is int for p in priorities)
    ):
        raise ValueError("priorities must be one int per task")

    def sparse(key: str, kinds: tuple[type, ...], structure: Any = None) -> dict[int, Any]:
        out = {}
        for k, v in columns.get(key, {}).items():
            i = int(k)
            if not 0 <= i < n or (structure is None and type(v) not in kinds):
                raise ValueError(f"{key}: not a task number and value of its type: {k!r}")
            out[i] = v if structure is None else structure(v)
        return out

    return Plan(
        ids=ids,
        names=ids if names == ids else names,
        methods=_uncolumn(columns["methods"], n),
        protocols=_uncolumn(columns["protocols"], n),
        params=params,
        dep_start=dep_start,
        dep_index=dep_index,
        needs_subst=bytes(has_marker(p) for p in params),
        by_id=by_id,
        aliases=aliases_of(ids, names),
        priorities=None if priorities is None else tuple(priorities),
        timeouts={i: float(v) for i, v in sparse("timeouts", (int, float)).items()},
        retries=sparse("retries", (), lambda v: _structure_retry(v, RetryPolicy)),
        isolations=sparse("isolations", (str,)),
        descriptions=sparse("descriptions", (str,)),
        tags={i: tuple(v) for i, v in sparse("tags", (list,)).items()},
        metadata=sparse("metadata", (dict,)),
    )


def event_to_record(event: Event) -> dict[str, Any]:
    """A JSON-ready record of an event, with the record version ``v``."""
    record: dict[str, Any] = converter.unstructure(event)
    record["v"] = RECORD_VERSION
    return record


def event_from_record(record: dict[str, Any]) -> Event:
    """Rebuild an event from :func:`event_to_record`'s output.

    Also reads the journal's compact completion records (version 2, one
    completed attempt each, written without an event object).

    Raises:
        ValueError: an unknown record version.
        cattrs.BaseValidationError: a malformed record.
    """
    version = record.pop("v", None)
    if version == COMPLETION_VERSION:
        task_id, attempt, started, result = record["c"]
        at, workflow_id = record["at"], record["w"]
        if not (
            isinstance(task_id, str)
            and isinstance(workflow_id, str)
            and isinstance(attempt, int)
            and isinstance(at, (int, float))
            and (started is None or isinstance(started, (int, float)))
            and isinstance(result, dict)
        ):
            raise ValueError("malformed completion record")
        return Event(
            kind=EventKind.TASK_COMPLETED,
            workflow_id=workflow_id,
            at=at,
            task_id=task_id,
            attempt=attempt,
            started_at=started,
            result=result,
        )
    if version != RECORD_VERSION:
        raise ValueError(f"unknown record version {version!r}")
    return converter.structure(record, Event)
