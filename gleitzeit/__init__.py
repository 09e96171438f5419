"""gleitzeit: an embeddable workflow engine for LLM-and-Python pipelines."""

from __future__ import annotations

from ._loader import load_workflow
from .core._models import (
    RetryPolicy,
    Task,
    TaskResult,
    TaskStatus,
    Workflow,
    WorkflowStatus,
)
from .core.errors import (
    ErrorCode,
    GleitzeitError,
    PersistenceError,
    ProviderError,
    TaskError,
    WorkflowError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "ErrorCode",
    "GleitzeitError",
    "PersistenceError",
    "ProviderError",
    "RetryPolicy",
    "Task",
    "TaskError",
    "TaskResult",
    "TaskStatus",
    "Workflow",
    "WorkflowError",
    "WorkflowStatus",
    "load_workflow",
]
