"""Validation problems: collected while loading, raised together."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Final

from ..core.errors import WorkflowValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Problems", "closest"]

_MAX_LISTED: Final = 20


class Problems:
    """Collects validation problems; each names the task and field it concerns."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(
        self, message: str, task: str | None = None, field: str | None = None, **extra: Any
    ) -> None:
        self.items.append({"task": task, "field": field, "message": message, **extra})

    def unknown_key(self, key: Any, known: Iterable[str], task: str | None, where: str) -> None:
        hint = closest(str(key), known)
        self.add(f"unknown field {key!r} in {where}{hint}", task, str(key))

    def raise_if_any(self, name: str | None, source: str | None) -> None:
        if not self.items:
            return
        lines = []
        for p in self.items[:_MAX_LISTED]:
            where = []
            if p["task"] is not None:
                where.append(f"task {p['task']!r}")
            if p["field"] is not None:
                where.append(f"field {p['field']!r}")
            lines.append(f"  - {', '.join(where) + ': ' if where else ''}{p['message']}")
        if len(self.items) > _MAX_LISTED:
            lines.append(f"  ... and {len(self.items) - _MAX_LISTED} more (see e.data['problems'])")
        what = f"Workflow {name!r}" if name else "The workflow"
        if source:
            what += f" ({source})"
        count = len(self.items)
        raise WorkflowValidationError(
            f"{what} has {count} problem{'s' if count != 1 else ''}; fix "
            f"{'them' if count != 1 else 'it'} and load it again:\n" + "\n".join(lines),
            data={"problems": self.items, "workflow": name, "source": source},
        )


def closest(word: str, known: Iterable[str]) -> str:
    """A " (did you mean ...?)" hint; skipped for huge lists, where it would be slow."""
    candidates = list(known)
    if len(candidates) > 5000:
        return ""
    match = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""
