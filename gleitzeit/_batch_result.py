"""BatchResult: the outcome of processing many files (CONTRACT.md §7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .core.errors import ErrorCode, GleitzeitError

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

__all__ = ["BatchResult"]

_FIELDS = ("batch_id", "total_files", "successful", "failed", "duration", "results")


@attrs.define(kw_only=True)
class BatchResult:
    """Per-file outcomes of a batch run.

    ``results`` maps each file path to ``{"status": "success" | "failed",
    "content": str | None, "error": str | None, "duration": float}``.
    """

    batch_id: str
    total_files: int
    successful: int
    failed: int
    duration: float
    results: dict[str, dict[str, Any]] = attrs.field(factory=dict, repr=False)
    parameters: dict[str, Any] = attrs.field(factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The six documented fields as top-level keys (plus ``parameters``)."""
        return {
            "batch_id": self.batch_id,
            "total_files": self.total_files,
            "successful": self.successful,
            "failed": self.failed,
            "duration": self.duration,
            "results": self.results,
            "parameters": self.parameters,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchResult:
        """The result that :meth:`to_dict` (or a saved JSON file, parsed) describes.

        Raises:
            GleitzeitError: INVALID_PARAMS when one of the six fields is missing.
        """
        missing = [key for key in _FIELDS if key not in data]
        if missing:
            raise GleitzeitError(
                f"Not a BatchResult: {', '.join(missing)} missing; pass what to_dict() "
                "or save_to_json() produced.",
                ErrorCode.INVALID_PARAMS,
                {"missing": missing},
            )
        return cls(
            batch_id=str(data["batch_id"]),
            total_files=int(data["total_files"]),
            successful=int(data["successful"]),
            failed=int(data["failed"]),
            duration=float(data["duration"]),
            results={str(k): dict(v) for k, v in data["results"].items()},
            parameters=dict(data.get("parameters") or {}),
        )

    def to_json(self, indent: int = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=repr)

    def save_to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` to ``path`` (folders are created); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.to_json() + "\n", encoding="utf-8")
        return target

    def to_markdown(self, max_content: int = 500) -> str:
        """A readable report: a summary, a table of every file, then one section per file.

        Each section holds the file's content (or its error), cut to
        ``max_content`` characters.
        """
        lines = [
            f"# Batch {self.batch_id}",
            "",
            f"- Files: {self.total_files}",
            f"- Successful: {self.successful}",
            f"- Failed: {self.failed}",
            f"- Duration: {self.duration:.2f} s",
            "",
            "| File | Status | Duration (s) |",
            "|---|---|---|",
        ]
        for path, entry in self.results.items():
            cell = str(path).replace("|", "\\|")
            lines.append(
                f"| `{cell}` | {entry.get('status', '?')} | {entry.get('duration', 0.0):.2f} |"
            )
        lines.append("")
        for path, entry in self.results.items():
            ok = entry.get("status") == "success"
            lines.append(f"## {'✅' if ok else '❌'} {Path(path).name}")
            lines.append("")
            lines.append(f"`{path}` ({entry.get('duration', 0.0):.2f} s)")
            lines.append("")
            text = entry.get("content") if ok else entry.get("error")
            text = str(text or "")
            if len(text) > max_content:
                text = text[:max_content] + " …"
            lines.extend([text, ""])
        return "\n".join(lines)

    def save_to_markdown(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_markdown` to ``path``; returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.to_markdown(), encoding="utf-8")
        return target


BatchResult.__module__ = "gleitzeit"
