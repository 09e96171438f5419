"""``python -m gleitzeit``: the same as the ``gleitzeit`` command."""

from __future__ import annotations

from gleitzeit.cli import main

if __name__ == "__main__":  # pragma: no branch
    main()
