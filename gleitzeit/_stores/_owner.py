"""One owner per live run: an OS file lock held for the run's lifetime.

A durable store shared by several processes (sqlite) lets any of them resume
a stored workflow. Two resumes of the same run at once would run its tasks
twice, so whoever runs a workflow first takes a lock on a small file named
after it. The kernel releases the lock when its process dies, even by
``kill -9``, so a run whose owner died is taken over at once, without waiting
out a lease. The file holds the owner's pid, host and start time, so that the
process that was refused can say who holds the run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from typing import TYPE_CHECKING

from ..core.errors import ErrorCode, WorkflowError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["RunLock"]


class RunLock:
    """The lock file of one workflow id under ``directory``."""

    def __init__(self, directory: Path, workflow_id: str) -> None:
        self.directory = directory
        self.workflow_id = workflow_id
        digest = hashlib.sha256(workflow_id.encode("utf-8")).hexdigest()[:32]
        self.path = directory / f"{digest}.lock"
        self._fd: int | None = None

    def __repr__(self) -> str:
        state = "held" if self._fd is not None else "free"
        return f"<RunLock {self.workflow_id!r} {state} at {self.path}>"

    def acquire(self) -> None:
        """Take the run, or raise if a live process holds it (blocking I/O: call off the loop).

        Raises:
            WorkflowError: WORKFLOW_INVALID_STATE naming the owner (pid, host, since).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            since = owner.get("since")
            when = (
                time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since))
                if isinstance(since, (int, float))
                else ""
            )
            raise WorkflowError(
                f"Workflow {self.workflow_id!r} is already running in process "
                f"{owner.get('pid', '?')} on {owner.get('host', '?')}{when}; wait for it "
                "to finish (or stop that process) and resume again.",
                ErrorCode.WORKFLOW_INVALID_STATE,
                {"workflow_id": self.workflow_id, "owner": owner},
            ) from None
        except BaseException:
            os.close(fd)
            raise
        record = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        ).encode()
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        self._fd = fd

    def release(self) -> None:
        """Give the run up (closing the file releases the lock)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_owner(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
