"""BatchResult: the six documented fields, JSON and Markdown output."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from gleitzeit import BatchResult

if TYPE_CHECKING:
    from pathlib import Path


def _result() -> BatchResult:
    return BatchResult(
        batch_id="batch-1",
        total_files=2,
        successful=1,
        failed=1,
        duration=1.5,
        results={
            "docs/a.md": {
                "status": "success",
                "content": "A" * 600,
                "error": None,
                "duration": 0.5,
            },
            "docs/b.md": {"status": "failed", "content": None, "error": "boom", "duration": 0.25},
        },
    )


def test_dict_and_json_carry_the_six_fields(tmp_path: Path) -> None:
    """to_dict/to_json/save_to_json have the documented fields as top-level keys."""
    result = _result()
    six = {"batch_id", "total_files", "successful", "failed", "duration", "results"}
    assert six <= set(result.to_dict())
    assert json.loads(result.to_json())["results"]["docs/b.md"]["error"] == "boom"
    saved = result.save_to_json(tmp_path / "out" / "r.json")
    assert json.loads(saved.read_text())["successful"] == 1


def test_markdown_lists_each_file(tmp_path: Path) -> None:
    """to_markdown has a summary and a section per file, long content cut."""
    text = _result().to_markdown()
    assert "- Files: 2" in text
    assert "## ✅ a.md" in text
    assert "## ❌ b.md" in text
    assert "boom" in text
    assert "A" * 500 + " …" in text
    assert "A" * 501 not in text
    path = _result().save_to_markdown(tmp_path / "r.md")
    assert path.read_text(encoding="utf-8") == text


def test_saved_json_reads_back_as_the_same_result(tmp_path: Path) -> None:
    """from_dict(json of save_to_json) is the result it came from; a partial dict is refused."""
    from gleitzeit import GleitzeitError

    result = _result()
    path = result.save_to_json(tmp_path / "r.json")
    assert BatchResult.from_dict(json.loads(path.read_text())) == result
    with pytest.raises(GleitzeitError) as info:
        BatchResult.from_dict({"batch_id": "x"})
    assert info.value.code.name == "INVALID_PARAMS"
    assert "total_files" in info.value.message
    assert info.value.data["missing"][0] == "total_files"
