"""The workflow data model: plain, immutable attrs values.

Nothing here parses user documents (that is :mod:`gleitzeit._loader`) or
touches I/O. Status snapshots are new values built with :func:`attrs.evolve`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Final

import attrs

__all__ = [
    "PRIORITY_NAMES",
    "BatchSpec",
    "RetryPolicy",
    "Task",
    "TaskResult",
    "TaskStatus",
    "Workflow",
    "WorkflowStatus",
]


class TaskStatus(enum.StrEnum):
    """Where a task is in its life.

    ``completed``, ``failed``, ``skipped`` and ``cancelled`` are final.
    """

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True for a status a task never leaves (within one run)."""
        return self in _FINAL_TASK


_FINAL_TASK: Final = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED}
)


class WorkflowStatus(enum.StrEnum):
    """Where a workflow is in its life; the last three are final."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True once the workflow has finished, one way or another."""
        return self in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED)


#: Named priorities; integers are accepted too (higher runs first).
PRIORITY_NAMES: Final[dict[str, int]] = {"low": -1, "normal": 0, "high": 1, "urgent": 2}


@attrs.frozen
class RetryPolicy:
    """How often a failing task is attempted, and how long to wait in between.

    The n-th retry waits ``min(max_delay, base_delay * 2 ** (n - 1))`` seconds,
    scaled by a random factor in [0.5, 1.0] when ``jitter`` is set.
    """

    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 300.0
    jitter: bool = True

    def delay(self, attempt: int, rand: float = 1.0) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Args:
            attempt: The attempt that just failed, counting from 1.
            rand: A random number in [0, 1) used for jitter.
        """
        base = min(self.max_delay, self.base_delay * (2.0 ** max(0, attempt - 1)))
        return base * (0.5 + rand / 2) if self.jitter else base


@attrs.frozen(kw_only=True)
class Task:
    """One node of a workflow.

    ``dependencies`` holds task ids (names are mapped to ids by the loader) and
    includes the dependencies implied by ``${...}`` references.
    """

    id: str
    name: str
    method: str
    protocol: str
    params: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    dependencies: tuple[str, ...] = ()
    timeout: float | None = None
    retry: RetryPolicy | None = None
    priority: int = 0
    isolation: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    status: TaskStatus = TaskStatus.PENDING


@attrs.frozen(kw_only=True)
class BatchSpec:
    """The ``batch:`` section of a batch document: which files to process."""

    directory: str | None = None
    pattern: str = "*"
    files: tuple[str, ...] = ()
    recursive: bool = False


@attrs.frozen(kw_only=True)
class TaskResult:
    """The outcome of one task: its result dict or its error, and timings."""

    task_id: str
    status: TaskStatus
    result: dict[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    error: dict[str, Any] | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None


@attrs.frozen(kw_only=True)
class Workflow:
    """A validated workflow, or a snapshot of one with its progress.

    ``completed_tasks`` and ``failed_tasks`` are counts; a skipped or cancelled
    task is neither.
    """

    id: str
    name: str
    #: The tasks in document order: a loaded workflow's plan (a sequence of
    #: Task made on demand), or a tuple.
    tasks: Sequence[Task] = attrs.field(default=(), repr=False)
    description: str | None = None
    timeout: float | None = None
    max_concurrent: int | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    source_dir: str | None = attrs.field(default=None, repr=False)
    batch: BatchSpec | None = attrs.field(default=None, repr=False)
    template: dict[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    #: MCP servers the workflow declares itself (name → stdio or HTTP config).
    mcp_servers: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    status: WorkflowStatus = WorkflowStatus.PENDING
    completed_tasks: int = 0
    failed_tasks: int = 0
    created_at: float | None = attrs.field(default=None, repr=False)
    finished_at: float | None = attrs.field(default=None, repr=False)

    @property
    def total_tasks(self) -> int:
        """The number of tasks in the workflow."""
        return len(self.tasks)

    @property
    def is_batch(self) -> bool:
        """True for a batch document whose tasks come from files."""
        return self.batch is not None

    def get_task(self, task_id: str) -> Task | None:
        """Return the task with this id (or name), or None."""
        index = getattr(self.tasks, "by_id", None)  # a plan's id → task number
        if isinstance(index, dict) and task_id in index:
            return self.tasks[index[task_id]]
        for task in self.tasks:
            if task.id == task_id:
                return task
        for task in self.tasks:
            if task.name == task_id:
                return task
        return None


for _model in (RetryPolicy, Task, BatchSpec, TaskResult, Workflow):
    attrs.resolve_types(_model)  # before __module__ changes where names are looked up
for _public in (TaskStatus, WorkflowStatus, RetryPolicy, Task, BatchSpec, TaskResult, Workflow):
    _public.__module__ = "gleitzeit"
