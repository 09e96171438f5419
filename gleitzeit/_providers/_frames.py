"""Framing between the engine and its python worker processes.

A frame is a 4-byte big-endian length and a :mod:`marshal` body (the values
are JSON-like; marshal reads them back several times faster than json).
Kept free of other imports so that a worker process starts fast.
"""

from __future__ import annotations

import json
import marshal
import os
from typing import Any, Final

__all__ = ["HEADER", "MAX_FRAME", "encode", "encode_response", "write_all"]

#: Bytes of a frame's length prefix.
HEADER: Final = 4
#: The largest frame read back (a task's result may be up to 1 GiB).
MAX_FRAME: Final = 1 << 30


def encode(value: Any) -> bytes:
    """One frame holding ``value`` (raises ValueError for what marshal cannot hold)."""
    body = marshal.dumps(value)
    return len(body).to_bytes(HEADER, "big") + body


def encode_response(value: Any) -> bytes:
    """Like :func:`encode`, turning anything marshal cannot hold into its ``repr``."""
    try:
        return encode(value)
    except ValueError:
        return encode(json.loads(json.dumps(value, default=repr)))


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking file descriptor."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
