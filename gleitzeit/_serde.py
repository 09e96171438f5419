"""The one cattrs converter that (un)structures every gleitzeit model."""

from __future__ import annotations

from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .core._events import Event, EventKind
from .core._models import Task, Workflow

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
converter.register_unstructure_hook(
    Workflow,
    make_dict_unstructure_fn(
        Workflow,
        converter,
        _cattrs_omit_if_default=True,
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
