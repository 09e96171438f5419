"""``batch/collect``: the step that gathers a batch's per-file contents.

A batch document with steps of its own (``tasks:`` beside ``batch:`` and
``template:``) gets one extra task, id ``batch``, that depends on every
file's task; its result maps each file (as given) to its content, so later
steps refer to ``${batch.result}``. It runs inline: it only reshapes values.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from ..core._methods import MethodSpec
from . import BaseProvider

if TYPE_CHECKING:
    from . import Call

__all__ = ["BATCH_SPECS", "COLLECT_METHOD", "BatchProvider"]

COLLECT_METHOD: Final = "batch/collect"

#: The methods this provider serves.
BATCH_SPECS: Final = (
    MethodSpec(
        COLLECT_METHOD,
        {"entries": (dict,)},
        description="Gather a batch's per-file contents (file → text) for later steps.",
    ),
)


def as_text(value: Any) -> str:
    """A value as an entry's content: text as itself, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class BatchProvider(BaseProvider):
    """Serves ``batch/collect`` in-process."""

    provider_id = "batch"
    specs = BATCH_SPECS

    def runs_inline(self, call: Call) -> bool:
        """Always: it reshapes values it already has."""
        return True

    async def execute(self, call: Call) -> dict[str, Any]:
        """Same as :meth:`run_inline`."""
        return self.run_inline(call)

    def run_inline(self, call: Call) -> dict[str, Any]:
        """``{"result": {file: content}, "files": [...], "count": n}``."""
        entries = call.params.get("entries") or {}
        contents = {str(k): as_text(v) for k, v in entries.items()}
        return {"result": contents, "files": list(contents), "count": len(contents)}
