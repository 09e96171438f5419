"""A stored workflow run as one JSON-ready dict (for reports and ``export_workflow``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core._scheduler import STATE_NAMES
from .core.errors import error_to_dict

if TYPE_CHECKING:
    from ._engine import Run
    from ._stores import StoredRun

__all__ = ["export_run"]


def export_run(stored: StoredRun, live: Run | None = None) -> dict[str, Any]:
    """Everything known about one run: the workflow, and per task its definition,
    status, result or error, and recorded attempts.

    ``live`` is the run as this client holds it (the memory store keeps no task
    state); its statuses, results and errors win over the store's.
    """
    wf = stored.workflow
    status = stored.task_status
    results = stored.results
    errors = stored.errors
    run_status = stored.status.value
    error = stored.error
    if live is not None:
        state = live.sched.state
        status = {t.id: STATE_NAMES[state[i]] for i, t in enumerate(wf.tasks)}
        results = live.results
        errors = {tid: error_to_dict(e) for tid, e in live.errors.items()}
        run_status = live.status.value
        error = error_to_dict(live.error) if live.error is not None else None
    tasks = []
    for t in wf.tasks:
        times = stored.task_times.get(t.id, ())
        tasks.append(
            {
                "id": t.id,
                "name": t.name,
                "method": t.method,
                "dependencies": list(t.dependencies),
                "params": t.params,
                "status": status.get(t.id, "pending"),
                "result": results.get(t.id),
                "error": errors.get(t.id),
                "attempts": [
                    {"start": a.start, "end": a.end, "status": a.status, "attempt": a.attempt}
                    for a in times
                ],
            }
        )
    return {
        "id": wf.id,
        "name": wf.name,
        "description": wf.description,
        "status": run_status,
        "created_at": stored.created_at,
        "started_at": stored.started_at,
        "finished_at": stored.finished_at,
        "error": error,
        "tasks": tasks,
    }
