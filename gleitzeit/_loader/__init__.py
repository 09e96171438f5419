"""Loading workflow documents: YAML/JSON files, dicts and Workflow objects.

:func:`load_workflow` parses and validates in one pass and reports *every*
problem at once in a :class:`~gleitzeit.core.errors.WorkflowValidationError`
(``e.data["problems"]``: dicts with ``task``, ``field`` and ``message``).
A dependency cycle is a :class:`~gleitzeit.core.errors.CircularDependencyError`
with ``e.data["cycle"]``. All work is linear in the size of the document.

The package reads like the steps of loading: :mod:`._read` turns a file into a
dict (YAML through :mod:`._yaml`), :mod:`._parse` checks each task's fields
(tasks of one shape once, then only what varies), :mod:`._graph` resolves ids
and dependencies, checks for cycles and builds the
:class:`~gleitzeit.core._plan.Plan` the workflow carries as its ``tasks``;
this module puts them together. Nothing is kept between calls.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._gc import gc_paused
from ..core._methods import MethodSpec, MethodTable
from ..core._models import BatchSpec, Task, Workflow
from ..core._plan import Plan
from ._graph import parse_tasks
from ._parse import (
    BATCH_STEP,
    LEGACY_IGNORED,
    WORKFLOW_KEYS,
    opt,
    parse_batch,
    positive,
)
from ._problems import Problems
from ._read import read_document

__all__ = ["BATCH_STEP", "WorkflowSource", "load_workflow", "parse_workflow", "read_document"]

log = logging.getLogger("gleitzeit.loader")

WorkflowSource = str | os.PathLike[str] | Mapping[str, Any] | Workflow


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
        if isinstance(obj.tasks, Plan):  # built by this loader: validated, planned
            return obj
        from .._serde import unstructure_workflow  # deferred: avoids an import cycle

        return parse_workflow(unstructure_workflow(obj), source_dir=obj.source_dir, methods=methods)
    if isinstance(obj, Mapping):
        return parse_workflow(obj, methods=methods)
    if isinstance(obj, (str, os.PathLike)):
        doc = read_document(obj)
        path = Path(obj)
        return parse_workflow(
            doc, source=str(path), source_dir=str(path.resolve().parent), methods=methods
        )
    problems = Problems()
    problems.add(
        f"cannot load a workflow from a {type(obj).__name__}; pass a path to a "
        ".yaml/.json file, a dict or a Workflow"
    )
    problems.raise_if_any(None, None)
    raise AssertionError("unreachable")  # pragma: no cover


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
        from .._providers import builtin_methods  # deferred: providers import more

        methods = builtin_methods()
    with gc_paused():
        return _parse_workflow(doc, source, source_dir, methods)


def _parse_workflow(
    doc: Mapping[str, Any],
    source: str | None,
    source_dir: str | None,
    methods: MethodTable,
) -> Workflow:
    problems = Problems()
    name = doc.get("name")
    if name is None:
        problems.add("missing required field 'name'", None, "name")
    elif not isinstance(name, str) or not name.strip():
        problems.add("'name' must be a non-empty string", None, "name")
        name = None
    for key in doc:
        if key in LEGACY_IGNORED:
            log.debug("ignoring workflow field %r (accepted from the earlier gleitzeit)", key)
        elif key not in WORKFLOW_KEYS:
            problems.unknown_key(key, WORKFLOW_KEYS, None, "the workflow")
    wf_id = opt(doc, "id", (str,), problems, None) or uuid.uuid4().hex
    description = opt(doc, "description", (str,), problems, None)
    timeout = positive(doc, "timeout", problems, None)
    metadata = opt(doc, "metadata", (dict,), problems, None) or {}
    max_parallel = opt(doc, "max_parallel_tasks", (int,), problems, None)
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
    tasks: Sequence[Task] = ()
    if is_batch:
        batch, template = parse_batch(doc, problems, methods, source_dir)
        if "tasks" in doc:  # steps after the files: they may use ${batch.result}
            tasks = _parse_batch_steps(doc, problems, methods, source_dir)
    else:
        for key in ("batch", "template", "protocol"):
            if key in doc:
                problems.add(f"{key!r} belongs to batch documents (add 'type: batch')", None, key)
        plan = parse_tasks(doc, problems, methods, source_dir)
        if plan is not None:
            tasks = plan
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
    return workflow


def _with_mcp_servers(raw: Any, methods: MethodTable, problems: Problems) -> MethodTable:
    """Check a workflow's own ``mcp_servers`` and add their ``mcp/<name>/*`` methods."""
    from .._providers.mcp import check_server_config  # deferred: only MCP users need it

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


def _parse_batch_steps(
    doc: Mapping[str, Any], problems: Problems, methods: MethodTable, source_dir: str | None
) -> tuple[Task, ...]:
    """A batch document's own steps, checked beside the ``batch`` step they may use."""
    raw = doc.get("tasks")
    if isinstance(raw, list):
        raw = [*raw, {"id": BATCH_STEP, "method": "batch/collect", "params": {"entries": {}}}]
    plan = parse_tasks({**doc, "tasks": raw}, problems, methods, source_dir)
    return tuple(t for t in plan or () if t.id != BATCH_STEP or t.method != "batch/collect")
