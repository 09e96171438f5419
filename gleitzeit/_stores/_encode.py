"""JSON text for the durable stores, with one encoder per write instead of one per value.

``json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)``
builds a new encoder on every call, which cost as much as encoding a small
result. :func:`json_encoder` returns a function that produces the same text
from one encoder made once (CPython's C encoder when present): the stores make
one per write and call it per row.
"""

from __future__ import annotations

import json
import json.encoder
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["json_encoder", "json_string"]

_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)

#: A string as a JSON string literal (non-ASCII kept as it is).
json_string: Callable[[str], str] = json.encoder.encode_basestring


def json_encoder() -> Callable[[Any], str]:
    """A function giving the compact JSON text of a value, as ``json.dumps`` would.

    Non-ASCII characters stay as they are, values JSON cannot hold become
    their ``repr``, and a reference cycle raises ``ValueError``. Make a new one
    per batch: it is cheap, and one that raised mid-value is not reused.
    """
    if _c_make_encoder is None:  # pragma: no cover - other Pythons than CPython
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr).encode
    encode = _c_make_encoder(
        {},  # markers: detects cycles
        repr,  # default
        json_string,
        None,  # indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps
