"""``gleitzeit report``: the HTML page, opened in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gleitzeit import SyncGleitzeitClient
from gleitzeit.cli._report import ALL_ROWS, render_report

SCRIPT = str(Path(sys.executable).with_name("gleitzeit"))


def chromium() -> str:
    """The Debian chromium binary; the run fails (never skips) without it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: apt-get install chromium (.ci/run does)"
    return found


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[str, str]:
    """The DOM after the page's scripts ran, and the browser's console log."""
    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = "\n".join(line for line in proc.stderr.splitlines() if ":CONSOLE" in line)
    return proc.stdout, console


def _flaky_run(tmp_path: Path, db: Path) -> str:
    """A 200-task run on sqlite: a retried task, a failure and its skipped dependents."""
    tries = tmp_path / "tries"
    flaky = (
        f"import pathlib; p = pathlib.Path({str(tries)!r}); "
        "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
        "assert n >= 1, 'first attempt fails'; result = n"
    )
    tasks: list[dict[str, object]] = []
    for i in range(200):
        task: dict[str, object] = {
            "id": f"task-{i:03d}",
            "name": f"step <{i:03d}>",  # markup in names must stay text
            "method": "python/execute",
            "params": {"code": f"result = {i}"},
        }
        if i >= 10:
            task["dependencies"] = [f"task-{i - 10:03d}"]
        tasks.append(task)
    tasks[3]["params"] = {"code": flaky}
    tasks[3]["retry"] = {"max_attempts": 3, "base_delay": 0.01, "jitter": False}
    tasks[7]["params"] = {"code": "raise ValueError('</script><b>boom</b>')"}
    with SyncGleitzeitClient(persistence="sqlite", db_path=db, isolation="inline") as client:
        wf = client.submit_workflow({"name": "report <check>", "tasks": tasks})
        with pytest.raises(Exception, match="boom"):
            client.resume_workflow(wf.id)
    return wf.id


def test_report_of_a_200_task_run_in_headless_chromium(tmp_path: Path) -> None:
    """The report of a real run loads in Chromium without console errors, draws every
    task of the 200 in the timeline with its attempt (the retried one marked, the
    failure red, skipped tasks without a bar), the graph with every node and edge,
    and the first failure's details; it references nothing by URL."""
    db = tmp_path / "runs.db"
    workflow_id = _flaky_run(tmp_path, db)
    page = tmp_path / "run.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    proc = subprocess.run(
        [
            SCRIPT,
            "--persistence",
            "sqlite",
            "--db-path",
            str(db),
            "report",
            workflow_id,
            "--output",
            str(page),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "workflow_id": workflow_id,
        "output": str(page),
        "tasks": 200,
    }
    text = page.read_text()
    assert not re.search(r"""(?:src|href)\s*=|url\(|@import|https?://""", text)
    dom, console = open_in_chromium(page, tmp_path)
    assert console == ""
    assert 'data-report-ready="1"' in dom
    assert "data-errors" not in dom
    rows = re.findall(r'<div class="row[^"]*" data-task="([^"]+)"', dom)
    assert sorted(rows) == [f"task-{i:03d}" for i in range(200)]
    bars = re.findall(r'class="bar s-(\w+)"', dom)
    assert bars.count("failed") == 1
    assert bars.count("completed") == 200 - 1 - 19  # task-007's 19 dependents were skipped
    assert "\u21bb1" in dom  # task-003 needed a second attempt
    assert 'data-nodes="200" data-edges="190"' in dom
    assert "step &lt;007&gt;" in dom  # names stay text
    assert "&lt;/script&gt;&lt;b&gt;boom" in dom  # the selected failure's error, as text
    assert "<b>boom</b>" not in dom


def test_a_10000_task_report_draws_only_the_rows_in_view(tmp_path: Path) -> None:
    """A 10,000-task report keeps the DOM small: the timeline draws the rows in view
    (a virtual list), the graph is one canvas, and the page still loads cleanly."""
    n = 10_000
    tasks = [
        {
            "id": f"t{i}",
            "name": f"t{i}",
            "method": "python/execute",
            "dependencies": [f"t{i - 100}"] if i >= 100 else [],
            "params": {"code": f"result = {i}"},
            "status": "completed",
            "result": {"result": i},
            "error": None,
            "attempts": [
                {
                    "start": 1000.0 + i / 100,
                    "end": 1000.5 + i / 100,
                    "status": "completed",
                    "attempt": 1,
                }
            ],
        }
        for i in range(n)
    ]
    run = {
        "id": "big",
        "name": "big",
        "description": None,
        "status": "completed",
        "created_at": 999.0,
        "started_at": 1000.0,
        "finished_at": 1101.0,
        "error": None,
        "tasks": tasks,
    }
    page = tmp_path / "big.html"
    page.write_text(render_report(run))
    dom, console = open_in_chromium(page, tmp_path)
    assert console == ""
    assert 'data-report-ready="1"' in dom
    rendered = int(re.findall(r'data-rendered="(\d+)"', dom)[0])
    assert 0 < rendered < 200 < ALL_ROWS < n
    assert len(re.findall(r'class="row', dom)) == rendered
    assert f'data-nodes="{n}"' in dom
    assert f"{n} of {n} tasks (drawing those in view)" in dom


def test_report_errors(tmp_path: Path) -> None:
    """An unknown workflow exits 6; an output path that cannot be written exits 2."""
    db = tmp_path / "runs.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    store = [SCRIPT, "--persistence", "sqlite", "--db-path", str(db)]
    missing = subprocess.run(
        [*store, "report", "nope"], capture_output=True, text=True, env=env, timeout=120
    )
    assert missing.returncode == 6
    assert missing.stderr.startswith("error: ")
    with SyncGleitzeitClient(persistence="sqlite", db_path=db, isolation="inline") as client:
        wf = client.submit_workflow(
            {
                "name": "x",
                "tasks": [
                    {"name": "a", "method": "python/execute", "params": {"code": "result = 1"}}
                ],
            }
        )
    blocked = tmp_path / "file"
    blocked.write_text("")
    bad = subprocess.run(
        [*store, "report", wf.id, "--output", str(blocked / "r.html")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2, bad.stderr
    assert "choose another --output" in bad.stderr
