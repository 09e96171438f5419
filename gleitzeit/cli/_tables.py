"""Tables for people: rich tables on a terminal, plain aligned lines elsewhere."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import click

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import Console
    from rich.text import Text

__all__ = ["print_fields", "print_table", "stdout_console"]

#: Rows shown in a table on a terminal before "... and N more".
MAX_ROWS: Final = 200

_STATUS_STYLE: Final = {
    "completed": "green",
    "running": "cyan",
    "pending": "dim",
    "queued": "dim",
    "failed": "red",
    "skipped": "yellow",
    "cancelled": "magenta",
}


def stdout_console() -> Console | None:
    """A rich console on stdout when it is an interactive terminal, else None."""
    from rich.console import Console

    console = Console(highlight=False)
    return console if console.is_terminal and not console.is_dumb_terminal else None


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column.endswith("_at") and isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return str(value)


def _styled(column: str, value: Any) -> Text:
    from rich.text import Text

    text = _cell(column, value)
    return Text(text, style=_STATUS_STYLE.get(text, "") if column == "status" else "")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str = "") -> None:
    """Print ``rows`` (dicts) in ``columns``: a rich table on a terminal, else plain lines.

    Plain lines are the cells separated by two spaces, no header: easy to
    ``grep``, ``cut`` and ``awk``.
    """
    console = stdout_console()
    if console is None:
        for row in rows:
            click.echo("  ".join(_cell(c, row.get(c)) for c in columns))
        return
    from rich.table import Table

    table = Table(title=title or None, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows[:MAX_ROWS]:
        table.add_row(*(_styled(column, row.get(column)) for column in columns))
    console.print(table)
    if len(rows) > MAX_ROWS:
        console.print(f"... and {len(rows) - MAX_ROWS} more (--json lists them all)")


def print_fields(info: dict[str, Any]) -> None:
    """Print ``key: value`` lines (plain) or a two-column table (terminal)."""
    console = stdout_console()
    if console is None:
        for key, value in info.items():
            click.echo(f"{key}: {_cell(key, value)}")
        return
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in info.items():
        table.add_row(key.replace("_", " "), _styled(key, value))
    console.print(table)
