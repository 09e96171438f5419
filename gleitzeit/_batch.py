"""Batches: many files through one method, run as an ordinary workflow.

A batch document (``type: batch``, ``batch: {directory, pattern, files,
recursive}``, ``template: {...}``) or a ``client.batch_*`` call becomes a
regular workflow with one task per file when it is submitted, and the engine
runs it unchanged: persistence, retries, timeouts, cancellation,
``resume_workflow`` and ``on_event`` apply to every file as to any task.

* Files are found off the event loop (:mod:`gleitzeit._batch_files`), sorted
  and de-duplicated; explicit ``files`` follow, in the order given.
* Each file's task has the id ``file-<slug of its path>`` (unique and stable
  for a given set of files), its own deep copy of the template's params, and
  the file attached: ``file_path`` for ``llm/chat``/``llm/generate`` (the file's
  text goes into the prompt), ``image_path`` for ``llm/vision``, and
  ``args["file_path"]`` for ``python/execute`` (visible to the script as
  ``args``, ``context`` and the global ``file_path``).
* A file is only read when its task runs, so a missing, unreadable, binary or
  over-size file, or a dangling symlink, fails its own entry and no other.
* Files in flight are bounded by :func:`files_in_flight`, the one place that
  resolves the batch's ``max_concurrent`` against the bounds the user set.
* A document's own ``tasks`` follow a step with the id ``batch``
  (``batch/collect``) that depends on every file and gathers their contents.
* :func:`batch_result` turns the finished run into a
  :class:`~gleitzeit.BatchResult`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio.lowlevel
import anyio.to_thread
import attrs

from ._batch_files import find_files, pattern_problem
from ._batch_result import BatchResult
from ._loader import BATCH_STEP, parse_workflow
from ._providers.batch import COLLECT_METHOD, as_text
from ._providers.python import resolve_path
from .core._events import EventKind
from .core.errors import WorkflowError, WorkflowValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ._client import GleitzeitClient
    from ._engine import Run
    from .core._events import Event
    from .core._models import Task, Workflow
    from .core.errors import GleitzeitError

__all__ = [
    "FILE_KEY",
    "batch_document",
    "batch_result",
    "entry_content",
    "expand_batch",
    "files_in_flight",
    "run_batch",
    "task_ids",
]

#: Template keys that are task fields rather than params.
_TASK_FIELDS: Final = ("timeout", "retry", "priority", "isolation")
_TEMPLATE_META: Final = frozenset({"method", "protocol", "params", "parameters", *_TASK_FIELDS})
_SLUG_MAX: Final = 80
#: The task metadata key naming a per-file task's file (as given).
FILE_KEY: Final = "batch_file"


# --- bounds ----------------------------------------------------------------------


def files_in_flight(
    requested: int,
    method: str,
    *,
    ollama_max_in_flight: int | None,
    workers: int | None,
) -> int:
    """The files a batch keeps in flight: the one place these bounds are resolved.

    ``requested`` (the batch's ``max_concurrent``) is a hard bound; a bound the
    user set explicitly on the client that the batch's method goes through
    (``ollama_max_in_flight`` for ``llm/*``, ``workers`` for ``python/execute``)
    lowers it. Defaults (None) never do: the Ollama host bound is widened to
    the batch's number instead (:meth:`OllamaProvider.allow`).
    """
    bounds = [requested]
    if method.startswith("llm/") and ollama_max_in_flight is not None:
        bounds.append(ollama_max_in_flight)
    if method == "python/execute" and workers is not None:
        bounds.append(workers)
    return max(1, min(bounds))


# --- building the workflow -----------------------------------------------------------


def task_ids(keys: Sequence[str]) -> list[str]:
    """``file-<slug>`` ids for these file paths: unique, and the same for the same paths."""
    ids: list[str] = []
    taken: set[str] = set()
    for key in keys:
        slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") or "file"
        if len(slug) > _SLUG_MAX:
            digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:8]
            slug = f"{slug[: _SLUG_MAX - 9]}-{digest}"
        tid = f"file-{slug}"
        n = 1
        while tid in taken:
            n += 1
            tid = f"file-{slug}-{n}"
        taken.add(tid)
        ids.append(tid)
    return ids


def _problem(workflow: Workflow, message: str, field: str, **extra: Any) -> WorkflowError:
    return WorkflowValidationError(
        f"Batch {workflow.name!r}: {message}",
        data={
            "workflow": workflow.name,
            "workflow_id": workflow.id,
            "problems": [{"task": None, "field": field, "message": message}],
            **extra,
        },
    )


def _gather(workflow: Workflow) -> list[tuple[str, str]]:
    """(path as given, resolved path) of every file of a batch. Blocking."""
    spec = workflow.batch
    assert spec is not None
    entries: list[tuple[str, str]] = []
    if spec.directory is not None:
        problem = pattern_problem(spec.pattern)
        if problem is not None:
            raise _problem(workflow, problem, "batch.pattern", pattern=spec.pattern)
        folder = resolve_path(spec.directory, workflow.source_dir)
        if not folder.is_dir():
            what = "is not a directory" if folder.exists() else "does not exist"
            raise _problem(
                workflow,
                f"the batch directory {spec.directory!r} {what} ({folder}); fix 'directory' "
                "(relative paths start at the workflow file's folder, else the working "
                "directory).",
                "batch.directory",
                directory=spec.directory,
            )
        entries.extend(
            (str(Path(spec.directory) / rel), str(folder / rel))
            for rel in find_files(folder, spec.pattern, spec.recursive)
        )
    entries.extend((name, str(resolve_path(name, workflow.source_dir))) for name in spec.files)
    seen: set[str] = set()
    unique = []
    for key, path in entries:
        if path not in seen:
            seen.add(path)
            unique.append((key, path))
    if not unique:
        where = (
            f"no file in {spec.directory!r} matches the pattern {spec.pattern!r}"
            + (" (recursive)" if spec.recursive else "")
            if spec.directory is not None
            else "the list of files is empty"
        )
        raise _problem(
            workflow,
            f"{where}; check the directory and pattern ('**/' searches sub-folders, "
            "braces give alternatives: '*.{md,txt}').",
            "batch",
            directory=spec.directory,
            pattern=spec.pattern,
        )
    return unique


def _split_template(template: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The template's method, params, and task fields (timeout, retry, ...)."""
    method = str(template["method"])
    nested = template.get("params", template.get("parameters"))
    if isinstance(nested, dict):
        params = dict(nested)
    else:
        params = {k: v for k, v in template.items() if k not in _TEMPLATE_META}
    fields = {k: template[k] for k in _TASK_FIELDS if template.get(k) is not None}
    return method, params, fields


def _attach(method: str, params: dict[str, Any], path: str) -> None:
    """Give one file to one task's own params (a ``${`` in its name stays literal)."""
    path = path.replace("${", "$${")
    if method == "python/execute":
        key = "context" if "context" in params and "args" not in params else "args"
        inputs = params.get(key)
        inputs = dict(inputs) if isinstance(inputs, dict) else {}
        inputs["file_path"] = path
        params[key] = inputs
    elif method == "llm/vision":
        params["image_path"] = path
    else:
        params["file_path"] = path


async def expand_batch(workflow: Workflow, client: GleitzeitClient) -> Workflow:
    """The ordinary workflow that runs a batch document: one task per file.

    Files are found in a worker thread. The workflow keeps the batch's id, name
    and timeout; its ``max_concurrent`` is :func:`files_in_flight`.

    Raises:
        WorkflowValidationError: WORKFLOW_VALIDATION_FAILED when the directory
            is missing or not a folder, the pattern cannot match inside it, or
            no file matches.
    """
    spec, template = workflow.batch, workflow.template
    assert spec is not None
    assert template is not None
    entries = await anyio.to_thread.run_sync(_gather, workflow)
    method, params, fields = _split_template(template)
    requested = workflow.max_concurrent or client.max_concurrent
    bound = files_in_flight(
        requested,
        method,
        ollama_max_in_flight=client._ollama.max_in_flight,
        workers=client._python.pool.size,
    )
    if method.startswith("llm/"):
        client._ollama.allow(bound)  # a default host bound never throttles the batch
    tasks = []
    for tid, (key, path) in zip(task_ids([k for k, _ in entries]), entries, strict=True):
        own = copy.deepcopy(params)  # each task its own params: nothing shared
        _attach(method, own, path)
        tasks.append(
            {
                "id": tid,
                "name": key,
                "method": method,
                "params": own,
                "metadata": {FILE_KEY: key},
                **copy.deepcopy(fields),
            }
        )
    if workflow.tasks:  # the document's own steps, after a step gathering every file
        field = "result" if method == "python/execute" else "response"
        if not method.startswith(("llm/", "python/")):
            field = "result"
        tasks.append(
            {
                "id": BATCH_STEP,
                "name": BATCH_STEP,
                "method": COLLECT_METHOD,
                "params": {
                    "entries": {t["metadata"][FILE_KEY]: f"${{{t['id']}.{field}}}" for t in tasks}
                },
            }
        )
        tasks.extend(_step_doc(t) for t in workflow.tasks)
    doc: dict[str, Any] = {
        "id": workflow.id,
        "name": workflow.name,
        "tasks": tasks,
        "max_parallel_tasks": bound,
        "metadata": {
            **workflow.metadata,
            "batch": {
                "directory": spec.directory,
                "pattern": spec.pattern,
                "recursive": spec.recursive,
                "files": len(tasks),
                "method": method,
                "max_concurrent": requested,
            },
        },
    }
    if workflow.description is not None:
        doc["description"] = workflow.description
    if workflow.timeout is not None:
        doc["timeout"] = workflow.timeout
    if workflow.mcp_servers:
        doc["mcp_servers"] = workflow.mcp_servers
    # Validating one task per file (a script file's existence included) is
    # blocking work for a big batch: a worker thread does it.
    parse = functools.partial(
        parse_workflow, doc, source_dir=workflow.source_dir, methods=client.providers.methods
    )
    return await anyio.to_thread.run_sync(parse)


def _step_doc(task: Task) -> dict[str, Any]:
    """A validated task as a document entry again (to be validated with the files)."""
    doc: dict[str, Any] = {
        "id": task.id,
        "name": task.name,
        "method": task.method,
        "params": copy.deepcopy(task.params),
        "dependencies": list(task.dependencies),
        "priority": task.priority,
    }
    if task.timeout is not None:
        doc["timeout"] = task.timeout
    if task.retry is not None:
        doc["retry"] = attrs.asdict(task.retry)
    for key in ("isolation", "description"):
        if getattr(task, key) is not None:
            doc[key] = getattr(task, key)
    if task.tags:
        doc["tags"] = list(task.tags)
    if task.metadata:
        doc["metadata"] = copy.deepcopy(task.metadata)
    return doc


def batch_document(
    *,
    name: str,
    directory: str | None,
    files: Sequence[str] | None,
    pattern: str,
    template: dict[str, Any],
    max_concurrent: int,
) -> dict[str, Any]:
    """A batch document for the ``client.batch_*`` methods (validated when submitted)."""
    batch: dict[str, Any] = {"pattern": pattern}
    if directory is not None:
        batch["directory"] = str(directory)
    if files is not None:
        if isinstance(files, (str, bytes)):
            raise WorkflowValidationError(
                f"'files' must be a list of paths, not one string ({files!r:.60}); "
                "write files=[...].",
                data={
                    "problems": [{"task": None, "field": "batch.files", "message": "not a list"}],
                },
            )
        batch["files"] = [str(f) for f in files]
    return {
        "id": f"batch-{uuid.uuid4().hex[:12]}",
        "name": name,
        "type": "batch",
        "batch": batch,
        "template": template,
        "max_parallel_tasks": max_concurrent,
    }


# --- running and the result --------------------------------------------------------


class _Durations:
    """An event listener timing each attempt of one workflow's tasks."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self.started: dict[str, float] = {}
        self.durations: dict[str, float] = {}

    def __call__(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.workflow_id != self.workflow_id or event.task_id is None:
                continue
            if event.kind is EventKind.TASK_STARTED:
                self.started[event.task_id] = event.at
            elif event.kind in (EventKind.TASK_COMPLETED, EventKind.TASK_FAILED):
                start = self.started.get(event.task_id)
                if start is not None:
                    self.durations[event.task_id] = max(0.0, event.at - start)


async def run_batch(client: GleitzeitClient, document: dict[str, Any]) -> BatchResult:
    """Submit a batch document, run it to its end, and report every file.

    Raises:
        WorkflowError: as ``run_workflow`` before anything runs; also
            WORKFLOW_CANCELLED / WORKFLOW_TIMEOUT when the batch as a whole was
            cancelled or ran past its timeout (``e.data["batch"]`` holds the
            partial :meth:`BatchResult.to_dict`; ``resume_workflow`` finishes it).
    """
    timer = _Durations(str(document["id"]))
    listeners = client._engine.listeners
    listeners.append(timer)
    start = time.perf_counter()
    try:
        run = await client._submit(document)
        await client._execute(run)
    finally:
        listeners.remove(timer)
    result = batch_result(run, timer.durations, time.perf_counter() - start)
    if run.error is not None and all(run.error is not e for e in run.errors.values()):
        # Not a file's failure: the whole batch stopped (cancelled, timed out,
        # or the store failed).
        run.error.data["batch"] = result.to_dict()
        raise run.error
    return result


def entry_content(method: str, result: Mapping[str, Any]) -> str:
    """An entry's content: an LLM's reply, or a script's ``result`` (as JSON unless text)."""
    if method == "python/execute":
        return as_text(result.get("result"))
    for key in ("response", "content", "result"):
        value = result.get(key)
        if value is not None:
            return as_text(value)
    return ""


def _fallback_duration(result: Mapping[str, Any] | None) -> float:
    """A duration from the result itself (a run resumed in another process)."""
    if not result:
        return 0.0
    value = result.get("execution_time")
    if isinstance(value, (int, float)):
        return float(value)
    value = result.get("total_duration")  # Ollama's, in nanoseconds
    if isinstance(value, (int, float)):
        return float(value) / 1e9
    return 0.0


def batch_result(run: Run, durations: Mapping[str, float], duration: float) -> BatchResult:
    """The :class:`BatchResult` of a finished batch run (only its per-file tasks)."""
    workflow = run.workflow
    results: dict[str, dict[str, Any]] = {}
    ok = failed = 0
    for task in workflow.tasks:
        key = task.metadata.get(FILE_KEY)
        if key is None:
            continue
        result = run.results.get(task.id)
        error: GleitzeitError | None = run.errors.get(task.id)
        spent = durations.get(task.id)
        if spent is None:
            spent = _fallback_duration(result)
        if result is not None:
            ok += 1
            results[str(key)] = {
                "status": "success",
                "content": entry_content(task.method, result),
                "error": None,
                "duration": spent,
                "task_id": task.id,
            }
            continue
        failed += 1
        if error is not None:
            message = error.message
        else:
            message = (
                f"not run: the batch ended {run.status} first; "
                f"resume_workflow({workflow.id!r}) finishes it."
            )
        results[str(key)] = {
            "status": "failed",
            "content": None,
            "error": message,
            "duration": spent,
            "task_id": task.id,
        }
    info = dict(workflow.metadata.get("batch") or {})
    return BatchResult(
        batch_id=workflow.id,
        total_files=ok + failed,
        successful=ok,
        failed=failed,
        duration=duration,
        results=results,
        parameters=info,
    )
