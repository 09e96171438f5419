"""A warm worker process for python/execute: ``python -m gleitzeit._providers._worker``.

Protocol: one JSON request per line on stdin, one JSON response per line on
the protocol channel (the process's original stdout). File descriptors 0 and 1
are pointed at /dev/null so user code can neither read requests nor corrupt
responses; its prints go to captured buffers (see :mod:`._runner`).
"""

from __future__ import annotations

import json
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
    responses = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    from ._runner import run_code

    responses.write(b'{"ready": true}\n')
    responses.flush()
    for line in requests:
        request = json.loads(line)
        cwd = request.get("cwd")
        if cwd and cwd != os.getcwd():
            os.chdir(cwd)
        response = run_code(request.get("code"), request.get("file"), request.get("args"))
        data = json.dumps(response, ensure_ascii=False, default=repr)
        responses.write(data.encode("utf-8", "surrogatepass") + b"\n")
        responses.flush()


if __name__ == "__main__":
    main()
