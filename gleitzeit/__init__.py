"""gleitzeit: an embeddable workflow engine for LLM-and-Python pipelines.

Public names are imported lazily, so ``import gleitzeit`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._batch_result import BatchResult
    from ._client import GleitzeitClient
    from ._loader import load_workflow
    from ._sync import SyncGleitzeitClient
    from .core._events import Event, EventKind
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
    "BatchResult",
    "ErrorCode",
    "Event",
    "EventKind",
    "GleitzeitClient",
    "GleitzeitError",
    "PersistenceError",
    "ProviderError",
    "RetryPolicy",
    "SyncGleitzeitClient",
    "Task",
    "TaskError",
    "TaskResult",
    "TaskStatus",
    "Workflow",
    "WorkflowError",
    "WorkflowStatus",
    "load_workflow",
]

_WHERE = {
    "BatchResult": "._batch_result",
    "GleitzeitClient": "._client",
    "SyncGleitzeitClient": "._sync",
    "load_workflow": "._loader",
    "Event": ".core._events",
    "EventKind": ".core._events",
    "RetryPolicy": ".core._models",
    "Task": ".core._models",
    "TaskResult": ".core._models",
    "TaskStatus": ".core._models",
    "Workflow": ".core._models",
    "WorkflowStatus": ".core._models",
    "ErrorCode": ".core.errors",
    "GleitzeitError": ".core.errors",
    "PersistenceError": ".core.errors",
    "ProviderError": ".core.errors",
    "TaskError": ".core.errors",
    "WorkflowError": ".core.errors",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gleitzeit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
