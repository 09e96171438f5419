"""The one cattrs converter that (un)structures every gleitzeit model."""

from __future__ import annotations

from typing import Any

import cattrs

from .core._models import Task, TaskResult, Workflow

__all__ = ["converter", "structure_workflow", "unstructure_workflow"]

#: Unstructures to JSON-ready dicts (enums as their values, tuples as lists).
converter = cattrs.Converter(omit_if_default=True)


def unstructure_workflow(workflow: Workflow) -> dict[str, Any]:
    """A JSON-ready dict of ``workflow`` that :func:`structure_workflow` reads back."""
    return converter.unstructure(workflow)  # type: ignore[no-any-return]


def structure_workflow(data: dict[str, Any]) -> Workflow:
    """Rebuild a Workflow from :func:`unstructure_workflow`'s output."""
    return converter.structure(data, Workflow)


def unstructure_result(result: TaskResult) -> dict[str, Any]:
    """A JSON-ready dict of a task result."""
    return converter.unstructure(result)  # type: ignore[no-any-return]


def structure_result(data: dict[str, Any]) -> TaskResult:
    """Rebuild a TaskResult."""
    return converter.structure(data, TaskResult)


_ = Task  # Task is structured as part of Workflow
