"""A real ``redis-server`` on a free loopback port, for tests.

::

    with RedisServer() as redis:
        client = GleitzeitClient(persistence="redis", redis_url=redis.url)

The server runs from the ``redis-server`` binary on ``PATH`` (Debian's
``redis-server`` package), in a temporary folder, without snapshots or an
append-only file: its data lives only as long as the process. Starting waits
until the server answers ``PING``; stopping ends the process and removes the
folder.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigurationError, ErrorCode, PersistenceError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

__all__ = ["RedisServer"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int, timeout: float = 0.5) -> bool:
    """True if a Redis server on 127.0.0.1:port answers PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            # A server that wants a password answers NOAUTH: it is up all the same.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 for the length of a ``with`` block.

    Args:
        binary: The server program (default: ``redis-server`` on ``PATH``).
        start_timeout: Seconds to wait for the first ``PONG``.
        args: More ``redis-server`` options, e.g. ``("--requirepass", "secret")``.

    Raises:
        ConfigurationError: the binary is not installed.
        PersistenceError: the server exited or did not answer in time (its log
            is in ``e.data["log"]``).
    """

    def __init__(
        self,
        binary: str = "redis-server",
        start_timeout: float = 20.0,
        args: Sequence[str] = (),
    ) -> None:
        self.binary = binary
        self.args = tuple(args)
        self.start_timeout = start_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    def __repr__(self) -> str:
        state = "running" if self._proc is not None and self._proc.poll() is None else "stopped"
        return f"<RedisServer {state} port={self.port}>"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the running server."""
        if self.port is None:
            raise ConfigurationError(
                "The RedisServer is not started; use it as 'with RedisServer() as redis:'.",
                ErrorCode.SYSTEM_NOT_INITIALIZED,
            )
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> RedisServer:
        """Start the server and wait until it answers ``PING``."""
        path = shutil.which(self.binary)
        if path is None:
            raise ConfigurationError(
                f"{self.binary!r} is not installed; install it (Debian: "
                "'apt-get install redis-server') to run the Redis tests.",
                data={"binary": self.binary},
            )
        self._dir = Path(tempfile.mkdtemp(prefix="gleitzeit-redis-"))
        log = self._dir / "redis.log"
        for _ in range(5):  # a port taken between choosing and binding: try another
            self.port = _free_port()
            self._proc = subprocess.Popen(
                [
                    path,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self._dir),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--logfile",
                    str(log),
                    "--daemonize",
                    "no",
                    *self.args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if _ping(self.port):
                    return self
                if self._proc.poll() is not None:
                    break
                time.sleep(0.01)
            text = log.read_text(errors="replace") if log.exists() else ""
            if self._proc.poll() is None:  # alive but silent
                self.stop()
                raise PersistenceError(
                    f"redis-server did not answer PING within {self.start_timeout:g} s.",
                    ErrorCode.PERSISTENCE_CONNECTION_FAILED,
                    {"backend": "redis", "log": text[-2000:]},
                )
            if "Address already in use" not in text:
                self.stop()
                raise PersistenceError(
                    f"redis-server exited with code {self._proc.returncode} at start; see "
                    "e.data['log'].",
                    ErrorCode.PERSISTENCE_CONNECTION_FAILED,
                    {"backend": "redis", "log": text[-2000:]},
                )
        self.stop()  # pragma: no cover - five taken ports in a row
        raise PersistenceError(
            "redis-server found no free port.", data={"backend": "redis"}
        )  # pragma: no cover

    def stop(self) -> None:
        """End the server (if running) and remove its folder."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                proc.kill()
                proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
