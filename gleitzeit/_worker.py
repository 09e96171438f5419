"""Serving shared runs: :meth:`GleitzeitClient.run_worker` and ``gleitzeit worker``.

A worker watches the Redis store for runs being shared (``{prefix}:live``,
woken by ``{prefix}:notify``) and joins each one, as ``resume_workflow``
would, taking its share of the ready tasks until the run ends. It never
starts a run: a run that is not live is left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import anyio

from .core._models import WorkflowStatus
from .core.errors import GleitzeitError

if TYPE_CHECKING:
    from ._client import GleitzeitClient

__all__ = ["serve", "worker_main"]

log = logging.getLogger("gleitzeit.worker")


#: Seconds a worker that read a submitted run's definition waits for the run
#: to start before it lets go (a later start still gets it joined).
PRELOAD_WAIT = 30.0


async def serve(client: GleitzeitClient, store: Any) -> None:
    """Join every shared run of ``store`` until cancelled.

    A run is prepared as soon as it is submitted (its definition read and
    its scheduler built while the submitter starts it), and joined the moment
    it goes live.
    """
    serving: set[str] = set()
    starting: dict[str, anyio.Event] = {}
    submitted: list[str] = []
    last = await store.runs_position()  # runs live already are in live_runs()
    async with anyio.create_task_group() as tg:
        while True:
            for wid in submitted:
                if wid not in serving:
                    serving.add(wid)
                    starting[wid] = anyio.Event()
                    tg.start_soon(_join, client, store, wid, serving, starting)
            for wid in await store.live_runs():
                if wid in starting:
                    starting[wid].set()
                elif wid not in serving:
                    serving.add(wid)
                    tg.start_soon(_join, client, store, wid, serving, starting)
            last, submitted = await store.wait_for_runs(last, 1.0)


async def _join(
    client: GleitzeitClient,
    store: Any,
    wid: str,
    serving: set[str],
    starting: dict[str, anyio.Event],
) -> None:
    live = starting.get(wid)

    async def ready() -> bool:
        """Whether to go on: the run went live, and this client does not run it already."""
        if live is not None:
            with anyio.move_on_after(PRELOAD_WAIT):
                await live.wait()
        return (live is None or live.is_set()) and wid not in client._runs

    try:
        stored = await store.load_shared(wid)
        if stored is None:
            return
        if stored.status is not WorkflowStatus.RUNNING and (
            live is None or stored.status is not WorkflowStatus.PENDING
        ):
            if live is None or not live.is_set():
                return  # not live; if it goes live later, live_runs() shows it
            # It went live while this read an older state (a run resumed): again.
            stored = await store.load_shared(wid)
            if stored is None or stored.status is not WorkflowStatus.RUNNING:
                return
        log.info("joining workflow %s %r", wid, stored.workflow.name)
        await client._join(stored, ready)
    except GleitzeitError as exc:  # the run's own failure is recorded; go on serving
        log.warning("workflow %s: %s", wid, exc)
    finally:
        serving.discard(wid)
        starting.pop(wid, None)


def worker_main(options: dict[str, Any], debug: bool) -> int:
    """``gleitzeit worker``: serve until SIGTERM or SIGINT, hand back held tasks, exit 0."""
    from ._client import GleitzeitClient

    async def main() -> None:
        async with GleitzeitClient(**options, debug=debug) as client:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async with anyio.create_task_group() as tg:

                    async def stop() -> None:
                        async for _ in signals:
                            tg.cancel_scope.cancel()
                            return

                    tg.start_soon(stop)
                    sys.stderr.write(
                        f"gleitzeit worker {os.getpid()} serving {client!r}; "
                        "SIGTERM or Ctrl-C hands back its tasks and stops it\n"
                    )
                    sys.stderr.flush()
                    await client.run_worker()

    anyio.run(main, backend="trio")
    return 0
