"""The one cattrs converter that (un)structures every gleitzeit model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .core._events import Event, EventKind
from .core._models import Task, Workflow
from .core._plan import Plan

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "COMPLETION_VERSION",
    "RECORD_VERSION",
    "converter",
    "event_from_record",
    "event_to_record",
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


def _unstructure_tasks(tasks: Sequence[Task], _type: Any = None) -> list[dict[str, Any]]:
    """A workflow's tasks as dicts; a plan's straight from its columns (no Task made)."""
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
    # Tasks with optional fields set go the general way (they are few).
    rare = {*tasks.timeouts, *tasks.retries, *tasks.isolations, *tasks.descriptions}
    rare.update(tasks.tags, tasks.metadata)
    if tasks.priorities is not None:
        rare.update(i for i, p in enumerate(tasks.priorities) if p)
    out: list[dict[str, Any]] = []
    for i in range(len(ids)):
        if i in rare:
            out.append(_unstructure_task(tasks[i]))
            continue
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
    """Rebuild a Workflow from :func:`unstructure_workflow`'s output."""
    return converter.structure(data, Workflow)


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
