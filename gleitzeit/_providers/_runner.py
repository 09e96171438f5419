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

    Returns a response dict: ``ok`` with ``result``/``stdout``/``stderr``/
    ``execution_time``, or ``ok: False`` with ``error_type``, ``message``,
    ``traceback`` (and the output so far). Never raises for user errors.
    """
    start = time.perf_counter()
    args = dict(args) if args else {}
    out, err = io.StringIO(), io.StringIO()
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    namespace.update({k: v for k, v in args.items() if type(k) is str and k.isidentifier()})
    namespace["args"] = args
    namespace["result"] = None
    saved = sys.stdout, sys.stderr, sys.stdin, sys.argv
    response: dict[str, Any]
    try:
        if file is not None:
            filename = file
            namespace["__file__"] = file
            with open(file, encoding="utf-8") as handle:
                source = handle.read()
            sys.argv = [file]
        else:
            filename, source = "<code>", code or ""
        program = _compile(source, filename)
        sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO()
        try:
            exec(program, namespace)
        finally:
            sys.stdout, sys.stderr, sys.stdin, sys.argv = saved
        response = {"ok": True}
    except SystemExit as exc:
        status = exc.code
        if status is None or status == 0:
            response = {"ok": True}
        else:
            response = {
                "ok": False,
                "error_type": "SystemExit",
                "message": f"the code exited with status {status!r}",
                "exit_code": status if isinstance(status, int) else 1,
                "traceback": "",
            }
    except Exception as exc:
        response = {
            "ok": False,
            "error_type": type(exc).__name__,
            "message": str(exc),
            "traceback": _user_traceback(exc),
        }
    response["execution_time"] = time.perf_counter() - start
    response["stdout"] = out.getvalue()
    response["stderr"] = err.getvalue()
    if response["ok"]:
        try:
            response["result"] = jsonable(namespace.get("result"))
        except RecursionError:
            response["result"] = repr(namespace.get("result"))
    return response
