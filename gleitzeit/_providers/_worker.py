"""A warm worker process for python/execute: ``python -m gleitzeit._providers._worker``.

Protocol (see :mod:`._frames`): length-prefixed :mod:`marshal` frames. The
engine sends a list of tasks ``(seq, code, file, args, cwd)`` (``cwd`` None:
unchanged); the worker runs them in order and answers each with a frame
``(seq, response)`` as soon as it is done, so the engine always knows which
task is running. File descriptors 0 and 1 are pointed at /dev/null so user
code can neither read requests nor corrupt responses; its prints go to
captured buffers (see :mod:`._runner`).
"""

from __future__ import annotations

import marshal
import os
import signal
import threading
import time

#: How often the lifeline checks that the engine is still this worker's parent.
_LIFELINE_INTERVAL = 0.2


def _lifeline(parent: int) -> None:
    """Kill this worker's whole process group once the engine is gone.

    The engine may die without a word (``kill -9``, the OOM killer); the
    worker is then re-parented, which this daemon thread notices even while
    the main thread is stuck in a task's busy loop. The group holds the
    worker and everything its tasks started (the worker leads a session).
    """
    while os.getppid() == parent:
        time.sleep(_LIFELINE_INTERVAL)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main() -> None:
    """Serve requests until stdin closes."""
    threading.Thread(
        target=_lifeline, args=(os.getppid(),), name="gleitzeit-lifeline", daemon=True
    ).start()
    requests = os.fdopen(os.dup(0), "rb")
    out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    from ._frames import HEADER, encode_response, write_all
    from ._runner import run_code

    read = requests.read
    write_all(out, encode_response((0, {"ready": True})))
    cwd = os.getcwd()
    while True:
        header = read(HEADER)
        if len(header) < HEADER:
            return
        tasks = marshal.loads(read(int.from_bytes(header, "big")))
        for seq, code, file, args, where in tasks:
            if where is not None and where != cwd:
                os.chdir(where)
                cwd = where
            write_all(out, encode_response((seq, run_code(code, file, args))))


if __name__ == "__main__":
    main()
