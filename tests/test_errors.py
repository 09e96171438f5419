"""Tests for gleitzeit.core.errors: codes, messages, pickling, dict round trips."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from gleitzeit.core import errors
from gleitzeit.core.errors import (
    CircularDependencyError,
    ErrorCode,
    GleitzeitError,
    PersistenceError,
    ProviderError,
    TaskError,
    TaskTimeoutError,
    WorkflowError,
    error_from_dict,
    error_to_dict,
)

ALL_CLASSES = [
    getattr(errors, n)
    for n in errors.__all__
    if isinstance(getattr(errors, n), type) and issubclass(getattr(errors, n), GleitzeitError)
]


def test_codes_keep_the_earlier_numbers() -> None:
    """ErrorCode keeps the earlier system's names and numbers."""
    assert ErrorCode.WORKFLOW_VALIDATION_FAILED.value == -28001
    assert ErrorCode.WORKFLOW_TIMEOUT.value == -28004
    assert ErrorCode.WORKFLOW_CIRCULAR_DEPENDENCY.value == -28006
    assert ErrorCode.TASK_TIMEOUT.value == -29003
    assert ErrorCode.TASK_PARAMETER_ERROR.value == -29006
    assert ErrorCode.PROVIDER_NOT_AVAILABLE.value == -30003
    assert ErrorCode.PERSISTENCE_INTEGRITY_ERROR.value == -26005
    assert ErrorCode.PARSE_ERROR.value == -32700
    assert len(ErrorCode) == 5 + 5 + 9 + 9 + 7 + 5 + 5 + 6


def test_every_code_has_a_hint() -> None:
    """Every code says what to do."""
    assert all(code.hint.strip() for code in ErrorCode)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_str_names_code_and_what_to_do(cls: type[GleitzeitError]) -> None:
    """str() holds the code's name and number, the message and the hint."""
    err = cls("Something broke in task 'a'.", data={"task_id": "a"})
    text = str(err)
    assert text.startswith(f"[{err.code.name} {int(err.code)}]")
    assert "task 'a'" in text
    assert err.code.hint in text
    assert cls.__name__ in repr(err)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_pickle_round_trip_keeps_class_code_and_data(cls: type[GleitzeitError]) -> None:
    """Errors survive pickling with class, code, message and data."""
    err = cls("msg", data={"task_id": "a", "n": [1, 2]})
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert (back.code, back.message, back.data) == (err.code, err.message, err.data)


def test_pickle_across_a_process_boundary() -> None:
    """An error pickled in another interpreter unpickles here intact."""
    code = (
        "import pickle, sys; from gleitzeit.core.errors import TaskTimeoutError;"
        "sys.stdout.buffer.write(pickle.dumps(TaskTimeoutError('late', data={'task_id':"
        " 'x'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    err = pickle.loads(out)
    assert isinstance(err, TaskTimeoutError)
    assert err.code == ErrorCode.TASK_TIMEOUT
    assert err.data == {"task_id": "x"}


def test_explicit_code_and_class_hierarchy() -> None:
    """A class accepts any code; subclasses are caught by their family."""
    err = ProviderError("Ollama is busy", ErrorCode.PROVIDER_OVERLOADED, {"provider_id": "o"})
    assert err.code == ErrorCode.PROVIDER_OVERLOADED
    assert isinstance(TaskTimeoutError("x"), TaskError)
    assert isinstance(CircularDependencyError("x"), WorkflowError)
    assert PersistenceError("x").code == ErrorCode.PERSISTENCE_CONNECTION_FAILED


def test_data_is_made_json_safe() -> None:
    """Data that JSON can't hold becomes its repr instead of breaking later."""
    err = TaskError("x", data={"obj": object(), "ok": 1})
    assert err.data["ok"] == 1
    assert err.data["obj"].startswith("<object object")


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_dict_round_trip(cls: type[GleitzeitError]) -> None:
    """error_to_dict / error_from_dict keep class, code, message and data."""
    err = cls("m", data={"k": "v"})
    back = error_from_dict(error_to_dict(err))
    assert type(back) is cls
    assert (back.code, back.message, back.data) == (err.code, "m", {"k": "v"})


def test_unknown_records_degrade_gracefully() -> None:
    """Unknown types and codes rebuild as the base class and INTERNAL_ERROR."""
    back = error_from_dict({"type": "Nope", "code": 12345, "message": "m"})
    assert type(back) is GleitzeitError
    assert back.code == ErrorCode.INTERNAL_ERROR


def test_every_code_is_documented() -> None:
    """docs/ERROR_REFERENCE.md lists every code with its number and hint."""
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "ERROR_REFERENCE.md").read_text(encoding="utf-8")
    for code in ErrorCode:
        assert f"| {int(code)} | `{code.name}` | {code.hint} |" in doc, code.name
