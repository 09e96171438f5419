"""Running python/execute code: shared by worker processes and inline mode.

Kept free of gleitzeit's heavier imports so that a worker process starts fast.
"""

from __future__ import annotations

import builtins
import io
import sys
import time
import traceback
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..core._json import jsonable

if TYPE_CHECKING:
    from types import CodeType

__all__ = ["run_code"]


@lru_cache(maxsize=512)
def _compile(source: str, filename: str) -> CodeType:
    return compile(source, filename, "exec")


def _user_traceback(exc: BaseException) -> str:
    """The traceback without this module's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def run_code(code: str | None, file: str | None, args: dict[str, Any] | None) -> dict[str, Any]:
    """Execute code (or a file) with ``args`` as globals; capture output and ``result``.

    Returns the task's result dict — ``result``, ``stdout``, ``stderr``,
    ``success: True``, ``execution_time`` — or, when the code raised or exited
    non-zero, ``success: False`` with ``error_type``, ``message``,
    ``traceback`` (and the output so far). Never raises for user errors.
    """
    start = time.perf_counter()
    args = dict(args) if args else {}
    out, err = io.StringIO(), io.StringIO()
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    if args:
        namespace.update({k: v for k, v in args.items() if type(k) is str and k.isidentifier()})
    namespace["args"] = args
    # Scripts written for the earlier gleitzeit read their inputs as `context`
    # (an input named "context" keeps its own value).
    namespace.setdefault("context", args)
    namespace["result"] = None
    saved = sys.stdout, sys.stderr, sys.stdin, sys.argv
    failure: dict[str, Any] | None = None
    try:
        if file is not None:
            namespace["__file__"] = file
            with open(file, encoding="utf-8") as handle:
                program = _compile(handle.read(), file)
            sys.argv = [file]
        else:
            program = _compile(code or "", "<code>")
        sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO()
        try:
            exec(program, namespace)
        finally:
            sys.stdout, sys.stderr, sys.stdin, sys.argv = saved
    except SystemExit as exc:
        status = exc.code
        if status is not None and status != 0:
            failure = {
                "error_type": "SystemExit",
                "message": f"the code exited with status {status!r}",
                "exit_code": status if isinstance(status, int) else 1,
                "traceback": "",
            }
    except BaseException as exc:  # user code: a KeyboardInterrupt it raises fails the task
        failure = {
            "error_type": type(exc).__name__,
            "message": str(exc),
            "traceback": _user_traceback(exc),
        }
    elapsed = time.perf_counter() - start
    if failure is not None:
        failure.update(
            success=False, stdout=out.getvalue(), stderr=err.getvalue(), execution_time=elapsed
        )
        return failure
    try:
        result = jsonable(namespace["result"])
    except RecursionError:
        result = repr(namespace["result"])
    return {
        "result": result,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "success": True,
        "execution_time": elapsed,
    }
