"""The README's first command runs a real example workflow; keep it working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_readme_example_runs() -> None:
    """`python examples/run_example.py` runs hello.yaml and prints every result."""
    out = subprocess.run(
        [sys.executable, "examples/run_example.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "hello.yaml: 3 tasks completed"
    assert '  Summary: {"greeting": "Hello, world!", "total": 55, "count": 10}' in lines


def test_example_reports_a_bad_workflow(tmp_path: Path) -> None:
    """Given a broken workflow, the example prints the error's code and exits 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: broken\ntasks:\n  - name: a\n    method: python/exec\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "examples/run_example.py", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 1
    assert "WORKFLOW_VALIDATION_FAILED" in out.stderr
    assert "did you mean 'python/execute'" in out.stderr
