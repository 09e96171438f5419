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


async def serve(client: GleitzeitClient, store: Any) -> None:
    """Join every shared run of ``store`` until cancelled."""
    serving: set[str] = set()
    last = "0"
    async with anyio.create_task_group() as tg:
        while True:
            for wid in await store.live_runs():
                if wid not in serving:
                    serving.add(wid)
                    tg.start_soon(_join, client, store, wid, serving)
            last = await store.wait_for_runs(last, 1.0)


async def _join(client: GleitzeitClient, store: Any, wid: str, serving: set[str]) -> None:
    try:
        stored = await store.load(wid)
        if stored is None or stored.status is not WorkflowStatus.RUNNING:
            return
        if wid in client._runs:  # this client runs it already
            return
        log.info("joining workflow %s %r", wid, stored.workflow.name)
        await client._join(stored)
    except GleitzeitError as exc:  # the run's own failure is recorded; go on serving
        log.warning("workflow %s: %s", wid, exc)
    finally:
        serving.discard(wid)


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
