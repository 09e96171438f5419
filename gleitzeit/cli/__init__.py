"""The ``gleitzeit`` command line (``gleitzeit --help``; also ``python -m gleitzeit``).

Never imported by ``import gleitzeit``: click and rich load only when the
command runs.
"""

from __future__ import annotations

from ._app import EXIT_CODES, main

__all__ = ["EXIT_CODES", "main"]
