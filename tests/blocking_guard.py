"""A guard for the test suite: gleitzeit's own code must never block an event loop.

While installed, a few blocking functions (file opening, reads and writes,
fsync, directory listing, ``stat``, sleeping, opening sqlite) check whether
they run on a thread that is running an event loop — asyncio's or trio's —
and whether the first caller outside the standard library is gleitzeit code.
If so, the call is recorded as a violation and refused with
:class:`BlockingCallError`; the test then fails even if gleitzeit caught the
error. Worker threads (the stores' writer threads, ``to_thread`` calls) are
free to block. Test code and user task code are not checked.

Inline python tasks run the user's code on the engine's thread by design
(that is what ``isolation="inline"`` means), so anything below
``Engine._call_inline`` is exempt.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import inspect
import io
import os
import sqlite3
import sys
import sysconfig
import time
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

__all__ = ["BlockingCallError", "guard", "violations"]

#: (owner, attribute) of every guarded function.
GUARDED: list[tuple[Any, str]] = [
    (builtins, "open"),
    (io, "open"),
    (os, "read"),
    (os, "write"),
    (os, "fsync"),
    (os, "listdir"),
    (os, "scandir"),
    (os, "stat"),
    (time, "sleep"),
    (sqlite3, "connect"),
]
#: Frames (module, function) below which blocking is allowed on the loop.
EXEMPT: set[tuple[str, str]] = {("gleitzeit._engine", "_call_inline")}
#: Calls made through these standard modules are not gleitzeit's doing.
EXEMPT_MODULES = {"subprocess", "linecache", "traceback"}
_STDLIB = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])

violations: list[str] = []


class BlockingCallError(AssertionError):
    """gleitzeit code called a blocking function on an event loop's thread."""


def _on_loop() -> bool:
    if asyncio._get_running_loop() is not None:
        return True
    return trio.lowlevel.in_trio_run()


def _culprit() -> str | None:
    """The gleitzeit function responsible for the current call, if any.

    That is the innermost frame outside the standard library, if it is
    gleitzeit's — unless the call goes through an exempt frame, comes from
    starting a process (the event loop libraries fork in the loop thread by
    design) or formatting a traceback, or test code called one of gleitzeit's
    plain (blocking by nature) functions directly.
    """
    frame: FrameType | None = sys._getframe(2)
    culprit: str | None = None
    outermost: FrameType | None = None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        code = frame.f_code
        if (module, code.co_name) in EXEMPT or module in EXEMPT_MODULES:
            return None
        if culprit is None and not code.co_filename.startswith(_STDLIB):
            if not module.startswith("gleitzeit") or module.startswith("gleitzeit.testing"):
                return None
            culprit = f"{module}.{code.co_name} ({code.co_filename}:{frame.f_lineno})"
        if culprit is not None and not code.co_filename.startswith(_STDLIB):
            if module.startswith("gleitzeit"):
                outermost = frame
            else:
                assert outermost is not None
                plain = not outermost.f_code.co_flags & inspect.CO_COROUTINE
                if plain and module.startswith("tests"):
                    return None  # a test called a blocking function of ours itself
                return culprit
        frame = frame.f_back
    return culprit


def _nonblocking_fd(name: str, args: tuple[Any, ...]) -> bool:
    """os.read/os.write on a non-blocking descriptor (an event loop's pipe) cannot block."""
    if name not in ("os.read", "os.write") or not args or not isinstance(args[0], int):
        return False
    try:
        return not os.get_blocking(args[0])
    except OSError:
        return False


def _wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if _on_loop() and not _nonblocking_fd(name, args):
            culprit = _culprit()
            if culprit is not None:
                message = f"{name}() blocked the event loop, called from {culprit}"
                violations.append(message)
                raise BlockingCallError(message)
        return original(*args, **kwargs)

    return checked


@functools.cache
def _originals() -> dict[tuple[int, str], Callable[..., Any]]:
    return {(id(owner), attr): getattr(owner, attr) for owner, attr in GUARDED}


def guard() -> Iterator[None]:
    """Install the guard for the duration of the generator (a pytest fixture body)."""
    originals = _originals()
    for owner, attr in GUARDED:
        name = f"{getattr(owner, '__name__', owner)}.{attr}"
        setattr(owner, attr, _wrap(name, originals[(id(owner), attr)]))
    try:
        yield
    finally:
        for owner, attr in GUARDED:
            setattr(owner, attr, originals[(id(owner), attr)])
