"""Helpers for testing code that uses gleitzeit (and gleitzeit itself).

* :func:`check_store` — the battery every store implementation must pass.
"""

from __future__ import annotations

from ._check_store import check_store

__all__ = ["check_store"]
