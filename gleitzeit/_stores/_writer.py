"""One long-lived writer thread per durable store, fed by a queue.

The event loop never touches the disk: :meth:`Writer.record` puts a batch of
events on a queue and waits for one signal. The thread takes everything that
is ready, writes it as one unit (one ``write``, one commit), and wakes the
waiting tasks through the loop's own thread-safe call (trio's token,
asyncio's ``call_soon_threadsafe``): no thread is started and no
``to_thread`` hand-off happens per write. Other work that must not overlap a
write (reads on the same sqlite connection, compaction, closing) goes through
the same queue with :meth:`Writer.call`, so it runs in order with the writes.

The thread starts in :meth:`Writer.start` (the store's ``open``) and is
joined in :meth:`Writer.stop` (its ``aclose``), after the queue is drained.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import trio

from .._gc import gc_paused

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["Writer"]

log = logging.getLogger("gleitzeit.writer")

T = TypeVar("T")
B = TypeVar("B")

#: Batches merged into one write at most (bounds the work lost to one failure).
MAX_GROUP: Final = 256


class _Job:
    """One request to the writer: a batch to write, or a call to make."""

    __slots__ = ("batch", "call", "done", "error", "result", "task")

    def __init__(self, batch: Any, call: Callable[[], Any] | None) -> None:
        self.batch = batch
        self.call = call
        #: The trio task waiting for this job (rescheduled when it is done), or
        #: None: then ``done`` is set (asyncio).
        self.task: trio.lowlevel.Task | None = None
        self.done: anyio.Event | None = None
        self.result: Any = None
        self.error: BaseException | None = None


def _loop_caller() -> tuple[Callable[..., object], bool]:
    """The running loop's thread-safe "call this soon", and whether the loop is trio's."""
    try:
        return trio.lowlevel.current_trio_token().run_sync_soon, True
    except RuntimeError:  # not in trio: asyncio (anyio supports only these two)
        return asyncio.get_running_loop().call_soon_threadsafe, False


def _wake(jobs: list[_Job]) -> None:
    """In the loop's thread: resume whoever waits for these jobs."""
    for job in jobs:
        if job.task is not None:
            trio.lowlevel.reschedule(job.task)
        else:
            assert job.done is not None
            job.done.set()


def _no_abort(_: Any) -> trio.lowlevel.Abort:
    # A write cannot be taken back half-way: the wait is shielded; a
    # cancellation is delivered at the caller's next checkpoint.
    return trio.lowlevel.Abort.FAILED


class Writer(Generic[B]):
    """A thread that performs a store's writes in order, batching what is ready.

    Args:
        name: The thread's name (``gleitzeit-<store>-writer``).
        write: Writes a list of batches as one unit, in this thread. It raises
            if nothing of them was written. When given a single batch it may
            keep the part that fits and raise for the rest (the store says how
            much in the error). A failed write of several batches is retried
            batch by batch, so each waiting caller gets its own outcome.
        close: Called in this thread after the last job, before it ends.
    """

    def __init__(
        self,
        name: str,
        write: Callable[[Sequence[B]], None],
        close: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._write = write
        self._close = close
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._call_soon: Callable[..., object] | None = None
        self._trio = False

    def __repr__(self) -> str:
        alive = self._thread is not None and self._thread.is_alive()
        return f"<Writer {self.name!r} running={alive} queued={self._queue.qsize()}>"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._thread is not None

    def start(self) -> None:
        """Start the thread (call from the event loop that will await the jobs)."""
        self._call_soon, self._trio = _loop_caller()
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Finish every queued job, run ``close``, and join the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            await anyio.lowlevel.checkpoint()
            return
        self._queue.put(None)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(thread.join)

    async def record(self, batch: B) -> None:
        """Write one batch (merged with whatever else is ready); return when written.

        The write completes or fails even if the caller is cancelled meanwhile:
        the wait is shielded, as a commit cannot be taken back half-way.
        """
        job = _Job(batch, None)
        await self._submit(job)
        if job.error is not None:
            raise job.error

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the writer thread, in order with the writes; return its value."""
        job = _Job(None, fn)
        await self._submit(job)
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    async def _submit(self, job: _Job) -> None:
        """Queue ``job`` and wait (shielded) until the thread has done it.

        On trio the waiting task parks itself and the thread reschedules it: one
        queue put, one wake-up of the loop, no event object per job (a chain's
        one commit per step pays only that round trip).
        """
        if self._trio:
            job.task = trio.lowlevel.current_task()
            self._queue.put(job)
            # Nothing between the put and the park yields to the loop, so the
            # reschedule (run in the loop's thread) always finds the task parked.
            await trio.lowlevel.wait_task_rescheduled(_no_abort)
            return
        job.done = anyio.Event()
        self._queue.put(job)
        with anyio.CancelScope(shield=True):
            await job.done.wait()

    # -- in the thread --------------------------------------------------------

    def _serve(self) -> None:
        get, empty = self._queue.get, self._queue.empty
        stopping = False
        while not stopping:
            ready: list[_Job | None] = [get()]
            while len(ready) < MAX_GROUP and not empty():  # this thread alone takes jobs
                ready.append(get())
            jobs: list[_Job] = []
            for job in ready:
                if job is None:
                    stopping = True  # finish what was queued before the stop
                else:
                    jobs.append(job)
            # Encoding a workflow's definition, or reading a journal back,
            # allocates an object per task: the collector would re-traverse the
            # whole heap meanwhile (as it would while loading one).
            with gc_paused():
                self._run(jobs)
            if jobs:
                self._signal(jobs)
        if self._close is not None:
            try:
                self._close()
            except Exception:  # pragma: no cover - closing must not kill the join
                log.exception("%s: closing failed", self.name)

    def _run(self, jobs: list[_Job]) -> None:
        group: list[_Job] = []
        for job in jobs:
            if job.call is None:
                group.append(job)
                continue
            self._write_group(group)
            group = []
            try:
                job.result = job.call()
            except BaseException as exc:
                job.error = exc
        self._write_group(group)

    def _write_group(self, group: list[_Job]) -> None:
        if not group:
            return
        if len(group) > 1:
            try:
                self._write([job.batch for job in group])
            except BaseException:
                pass  # nothing of the group was written: each batch on its own
            else:
                return
        for job in group:
            try:
                self._write([job.batch])
            except BaseException as exc:
                job.error = exc

    def _signal(self, jobs: list[_Job]) -> None:
        assert self._call_soon is not None
        try:
            self._call_soon(_wake, jobs)
        except Exception:  # the loop is gone: nobody is waiting any more
            log.debug("%s: the event loop ended before its writes were confirmed", self.name)
