"""gleitzeit's pure core: models, errors, graphs and references.

Nothing in this package does I/O or imports anyio, yaml, httpx or sqlite3.
"""
