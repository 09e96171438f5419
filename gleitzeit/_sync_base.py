"""The lifecycle half of SyncGleitzeitClient; the methods are generated (``_sync.py``)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Self, TypeVar

import trio
from anyio.from_thread import start_blocking_portal

from .core.errors import ErrorCode, GleitzeitError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from contextlib import AbstractContextManager
    from types import TracebackType

    from anyio.from_thread import BlockingPortal

    from ._client import GleitzeitClient

__all__ = ["SyncClientBase"]

T = TypeVar("T")


def _in_trio() -> bool:
    """True if the calling thread runs a trio loop (trio refuses to block it)."""
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


class SyncClientBase:
    """Runs a :class:`GleitzeitClient` on an event loop in a helper thread.

    ``__enter__`` starts a blocking portal (a trio loop in its own thread) and
    enters the async client inside it; every method calls through that portal;
    ``__exit__`` leaves the client and stops the thread. Because the loop has
    its own thread, this also works where an asyncio loop is already running
    in the calling thread (a Jupyter cell, say).
    """

    _client: GleitzeitClient

    def __init__(self) -> None:
        self._portal: BlockingPortal | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._client_cm: AbstractContextManager[Any] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self._client!r}>"

    def __enter__(self) -> Self:
        if self._portal_cm is not None:
            raise GleitzeitError(
                "A SyncGleitzeitClient can be entered once; create a new one.",
                ErrorCode.SYSTEM_SHUTDOWN,
            )
        if _in_trio():
            raise GleitzeitError(
                "SyncGleitzeitClient blocks its caller, and this thread runs trio; inside "
                "trio code use 'async with GleitzeitClient() as client:' instead.",
                ErrorCode.SYSTEM_NOT_INITIALIZED,
            )
        self._portal_cm = start_blocking_portal(backend="trio", name="gleitzeit")
        portal = self._portal_cm.__enter__()
        try:
            self._client_cm = portal.wrap_async_context_manager(self._client)
            self._client_cm.__enter__()
        except BaseException as exc:
            self._portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._portal = portal
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._portal_cm is not None
        assert self._client_cm is not None
        self._portal = None
        try:
            return self._client_cm.__exit__(exc_type, exc, tb)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def _call(self, func: Callable[[], Awaitable[T]]) -> T:
        if self._portal is None:
            raise GleitzeitError(
                "The client is not open; use it inside 'with SyncGleitzeitClient() as client:'.",
                ErrorCode.SYSTEM_NOT_INITIALIZED,
            )
        portal = self._portal
        finished = threading.Event()

        async def call() -> T:
            try:
                return await func()
            finally:
                finished.set()

        future = portal.start_task_soon(call)
        try:
            return future.result()
        except KeyboardInterrupt:
            # Ctrl-C reached this thread while the call runs on the loop's
            # thread: cancel it there and wait until it has stopped its tasks
            # and recorded the run (cancelled, so a durable run stays
            # resumable); then the interrupt goes on as itself.
            future.cancel()
            finished.wait()
            raise
