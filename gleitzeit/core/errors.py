"""Errors raised by gleitzeit.

Every error is a :class:`GleitzeitError`. The class says what to catch; the
:class:`ErrorCode` says exactly what happened::

    GleitzeitError                      (any code)
    ├── ConfigurationError              CONFIGURATION_ERROR -31003
    ├── WorkflowError                   WORKFLOW_* -28xxx
    │   ├── WorkflowValidationError     WORKFLOW_VALIDATION_FAILED -28001
    │   └── CircularDependencyError     WORKFLOW_CIRCULAR_DEPENDENCY -28006
    ├── TaskError                       TASK_* -29xxx
    │   ├── TaskTimeoutError            TASK_TIMEOUT -29003
    │   └── TaskParameterError          TASK_PARAMETER_ERROR -29006
    ├── ProviderError                   PROVIDER_* -30xxx (``data["provider_id"]``)
    └── PersistenceError                PERSISTENCE_* -26xxx (``data["backend"]``)

Each error carries ``.code`` (an :class:`ErrorCode`), ``.message`` (what went
wrong, in words a user can act on) and ``.data`` (a JSON-safe dict: ids, the
list of problems, partial results). ``str(error)`` names the code, repeats the
message and adds the code's hint on what to do.

Errors survive a process boundary: they pickle, and :func:`error_to_dict` /
:func:`error_from_dict` turn them into JSON-safe dicts and back, class included.
The numbers in :class:`ErrorCode` are those of the earlier gleitzeit.
"""

from __future__ import annotations

import enum
import json
from typing import Any, Final

__all__ = [
    "CircularDependencyError",
    "ConfigurationError",
    "ErrorCode",
    "GleitzeitError",
    "PersistenceError",
    "ProviderError",
    "TaskError",
    "TaskParameterError",
    "TaskTimeoutError",
    "WorkflowError",
    "WorkflowValidationError",
    "error_from_dict",
    "error_to_dict",
]


class ErrorCode(enum.IntEnum):
    """What went wrong, as a stable number; ``code.hint`` says what to do."""

    hint: str

    def __new__(cls, value: int, hint: str = "") -> ErrorCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.hint = hint
        return member

    # JSON-RPC
    PARSE_ERROR = -32700, "The input is not valid JSON; fix its syntax."
    INVALID_REQUEST = -32600, "The request is malformed; check its fields."
    METHOD_NOT_FOUND = -32601, "Use one of the methods listed in the error."
    INVALID_PARAMS = -32602, "Check the parameters named in the error against the docs."
    INTERNAL_ERROR = -32603, "This is a bug in gleitzeit; please report it with the data."
    # System
    SYSTEM_NOT_INITIALIZED = -31001, "Use the client inside 'async with' (or 'with')."
    SYSTEM_SHUTDOWN = -31002, "The client was closed; create a new one."
    CONFIGURATION_ERROR = -31003, "Fix the option or environment variable named."
    RESOURCE_EXHAUSTED = -31004, "Free the resource named or lower the concurrency."
    RATE_LIMIT_EXCEEDED = -31005, "Slow down or raise the limit."
    # Provider
    PROTOCOL_NOT_FOUND = -30001, "Use a known protocol: llm/v1, python/v1 or mcp/v1."
    PROVIDER_NOT_FOUND = -30002, "No provider handles this method; check the method name."
    PROVIDER_NOT_AVAILABLE = -30003, "Start the service (e.g. 'ollama serve') or fix its URL."
    PROVIDER_INITIALIZATION_FAILED = -30004, "Check the provider's configuration."
    PROVIDER_UNHEALTHY = -30005, "Check the service's logs and health."
    PROVIDER_TIMEOUT = -30006, "The service answered too slowly; raise the timeout."
    PROVIDER_OVERLOADED = -30007, "The service is busy; lower concurrency or retry later."
    METHOD_NOT_SUPPORTED = -30008, "Use a method the provider supports."
    PROTOCOL_VERSION_MISMATCH = -30009, "Use a matching protocol version."
    # Task
    TASK_VALIDATION_FAILED = -29001, "Fix the task definition named in the error."
    TASK_EXECUTION_FAILED = -29002, "See the traceback or cause in e.data and fix the task."
    TASK_TIMEOUT = -29003, "Raise the task's 'timeout' or make it faster."
    TASK_CANCELLED = -29004, "The task was cancelled; resume the workflow to run it."
    TASK_DEPENDENCY_FAILED = -29005, "Fix the failed dependency; this task was skipped."
    TASK_PARAMETER_ERROR = -29006, "Fix the ${...} reference using the keys listed."
    TASK_RESULT_INVALID = -29007, "Return a JSON-compatible result."
    TASK_RETRY_EXHAUSTED = -29008, "Every attempt failed; see the last error."
    TASK_NOT_FOUND = -29009, "Check the task id against the workflow."
    # Workflow
    WORKFLOW_VALIDATION_FAILED = -28001, "Fix every problem listed in e.data['problems']."
    WORKFLOW_NOT_FOUND = -28002, "Check the workflow id (list_workflows shows them)."
    WORKFLOW_EXECUTION_FAILED = -28003, "See the failed task's error in e.data."
    WORKFLOW_TIMEOUT = -28004, "Wait longer or raise the workflow's 'timeout'."
    WORKFLOW_CANCELLED = -28005, "The workflow was cancelled; resume it to finish."
    WORKFLOW_CIRCULAR_DEPENDENCY = -28006, "Remove one dependency of the cycle in e.data['cycle']."
    WORKFLOW_INVALID_STATE = -28007, "The workflow is not in a state that allows this."
    # Queue
    QUEUE_NOT_FOUND = -27001, "Check the queue name."
    QUEUE_FULL = -27002, "Wait for the queue to drain or raise its size."
    QUEUE_EMPTY = -27003, "Nothing is queued."
    SCHEDULING_FAILED = -27004, "This is a bug in gleitzeit; please report it."
    SCHEDULER_NOT_RUNNING = -27005, "Start the client first."
    # Persistence
    PERSISTENCE_CONNECTION_FAILED = -26001, "Check that the store's path or URL is reachable."
    PERSISTENCE_WRITE_FAILED = -26002, "Check free disk space and write permission."
    PERSISTENCE_READ_FAILED = -26003, "Check that the store's file is readable."
    PERSISTENCE_TRANSACTION_FAILED = -26004, "Another process holds the store; retry."
    PERSISTENCE_INTEGRITY_ERROR = -26005, "The store's data is damaged; see the line named."
    # Network
    NETWORK_UNREACHABLE = -25001, "Check the network and the host name."
    CONNECTION_REFUSED = -25002, "Start the service or fix its port."
    CONNECTION_TIMEOUT = -25003, "Check the host or raise the connect timeout."
    CONNECTION_LOST = -25004, "The connection dropped; retry."
    AUTHENTICATION_FAILED = -25005, "Check the credentials."
    AUTHORIZATION_FAILED = -25006, "Check the permissions."


def _json_safe(data: dict[str, Any] | None) -> dict[str, Any]:
    """Return ``data`` as a dict that survives ``json.dumps``.

    Values JSON can't hold become their ``repr`` (tuples become lists).
    """
    if not data:
        return {}
    try:
        json.dumps(data)
    except (TypeError, ValueError):
        return json.loads(json.dumps(data, default=repr))  # type: ignore[no-any-return]
    return dict(data)


class GleitzeitError(Exception):
    """Base class of every gleitzeit error.

    Args:
        message: What went wrong, in words a user can act on.
        code: The :class:`ErrorCode`; each subclass has a default.
        data: JSON-safe details (ids, problems, partial results).
    """

    default_code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        code: ErrorCode | int | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.message: str = message
        self.code: ErrorCode = ErrorCode(code) if code is not None else self.default_code
        self.data: dict[str, Any] = _json_safe(data)
        super().__init__(message)

    def __str__(self) -> str:
        text = f"[{self.code.name} {int(self.code)}] {self.message}"
        # A hint in the data is specific to this error and beats the code's.
        given = self.data.get("hint")
        hint = given if isinstance(given, str) and given else self.code.hint
        if hint and hint not in self.message:
            text += f" (What to do: {hint})"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.name}, message={self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild through the base signature so every subclass pickles,
        # whatever extra keyword arguments its constructor takes.
        return (_rebuild, (type(self), self.message, int(self.code), self.data))


def _rebuild(
    cls: type[GleitzeitError], message: str, code: int, data: dict[str, Any]
) -> GleitzeitError:
    err = cls.__new__(cls)
    GleitzeitError.__init__(err, message, code, data)
    return err


class ConfigurationError(GleitzeitError):
    """A client option or environment variable is invalid."""

    default_code = ErrorCode.CONFIGURATION_ERROR


class WorkflowError(GleitzeitError):
    """A workflow could not be loaded, validated or finished."""

    default_code = ErrorCode.WORKFLOW_EXECUTION_FAILED


class WorkflowValidationError(WorkflowError):
    """A workflow document has problems; ``data["problems"]`` lists them all."""

    default_code = ErrorCode.WORKFLOW_VALIDATION_FAILED


class CircularDependencyError(WorkflowError):
    """The tasks' dependencies form a cycle; ``data["cycle"]`` lists one."""

    default_code = ErrorCode.WORKFLOW_CIRCULAR_DEPENDENCY


class TaskError(GleitzeitError):
    """A task failed; ``data["task_id"]`` names it."""

    default_code = ErrorCode.TASK_EXECUTION_FAILED


class TaskTimeoutError(TaskError):
    """A task ran past its ``timeout`` and was stopped."""

    default_code = ErrorCode.TASK_TIMEOUT


class TaskParameterError(TaskError):
    """A ``${...}`` reference could not be resolved."""

    default_code = ErrorCode.TASK_PARAMETER_ERROR


class ProviderError(GleitzeitError):
    """A provider (Ollama, a worker pool, MCP) failed; ``data["provider_id"]`` names it."""

    default_code = ErrorCode.PROVIDER_NOT_AVAILABLE


class PersistenceError(GleitzeitError):
    """A store could not read or write; ``data["backend"]`` names it."""

    default_code = ErrorCode.PERSISTENCE_CONNECTION_FAILED


_CLASSES: Final[dict[str, type[GleitzeitError]]] = {
    cls.__name__: cls
    for cls in (
        GleitzeitError,
        ConfigurationError,
        WorkflowError,
        WorkflowValidationError,
        CircularDependencyError,
        TaskError,
        TaskTimeoutError,
        TaskParameterError,
        ProviderError,
        PersistenceError,
    )
}


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, with (nested) exception groups opened, in order."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(reversed(item.exceptions))
        else:
            leaves.append(item)
    return leaves


def error_to_dict(error: GleitzeitError) -> dict[str, Any]:
    """Return a JSON-safe dict from which :func:`error_from_dict` rebuilds ``error``."""
    kind = type(error).__name__
    if kind not in _CLASSES:  # a user subclass: keep its nearest known base
        kind = next(c.__name__ for c in type(error).__mro__ if c.__name__ in _CLASSES)
    return {"type": kind, "code": int(error.code), "message": error.message, "data": error.data}


def error_from_dict(record: dict[str, Any]) -> GleitzeitError:
    """Rebuild an error saved with :func:`error_to_dict` (unknown types → base class)."""
    cls = _CLASSES.get(str(record.get("type")), GleitzeitError)
    code = record.get("code")
    try:
        code_value = ErrorCode(int(code)) if code is not None else None
    except ValueError:
        code_value = ErrorCode.INTERNAL_ERROR
    return _rebuild(
        cls,
        str(record.get("message", "")),
        int(code_value if code_value is not None else cls.default_code),
        dict(record.get("data") or {}),
    )


for _cls in _CLASSES.values():
    _cls.__module__ = "gleitzeit.core.errors"
