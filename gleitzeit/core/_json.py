"""Turning arbitrary Python values into JSON-safe ones, predictably."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["jsonable"]

_SCALARS = (str, int, bool, type(None))


def jsonable(value: Any) -> Any:
    """Return ``value`` converted to something ``json.dumps`` accepts.

    Tuples and sets become lists, non-string dict keys become strings
    (``str(key)``; ``None``/bools as JSON spells them), non-finite floats and
    any other object become their ``repr``. Never raises for ordinary objects.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        return value if math.isfinite(value) else repr(value)
    if kind is dict:
        if all(type(k) is str for k in value):
            return {k: jsonable(v) for k, v in value.items()}
        return {_key(k): jsonable(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        try:
            items = sorted(value)
        except TypeError:
            items = sorted(value, key=repr)
        return [jsonable(v) for v in items]
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return jsonable(float(value))
    if isinstance(value, str):
        return str(value)
    return repr(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)
