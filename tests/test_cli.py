"""The ``gleitzeit`` command, run as a real child process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .conftest import alive, hear_ctrl_c, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from gleitzeit.testing import FakeOllama

GLEITZEIT = [sys.executable, "-m", "gleitzeit"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    full_env["GLEITZEIT_PERSISTENCE_BACKEND"] = "memory"  # tests name their store explicitly
    full_env.update(env or {})
    return subprocess.run(
        [*GLEITZEIT, *args], capture_output=True, text=True, env=full_env, timeout=120
    )


def interrupt_when(ready: Callable[[], bool], argv: list[str], **env_vars: str) -> str:
    """Start ``argv`` (no GLEITZEIT_* variables but ``env_vars``), send it SIGINT once
    ``ready()`` holds, and return its stderr after checking it exited with 130."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, **env_vars},
        preexec_fn=hear_ctrl_c,
    )
    try:
        assert wait_until(lambda: ready() or proc.poll() is not None, 60)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    return err


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD = """
name: two steps
tasks:
  - id: a
    method: python/execute
    params: {code: "result = 20 + 1"}
  - id: b
    method: python/execute
    dependencies: [a]
    params: {code: "result = ${a.result} * 2"}
"""

FAILING = """
name: fails
tasks:
  - id: boom
    method: python/execute
    params: {code: "raise ValueError('nope')"}
"""


def test_import_gleitzeit_does_not_load_the_cli() -> None:
    code = (
        "import sys, gleitzeit; "
        "print(sorted(m for m in sys.modules if m in ('click', 'rich') "
        "or m.startswith('gleitzeit.cli')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_json_prints_only_results(tmp_path: Path) -> None:
    proc = run_cli("run", write(tmp_path, GOOD), "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert list(results) == ["a", "b"]
    assert results["b"]["result"] == 42


def test_run_plain(tmp_path: Path) -> None:
    proc = run_cli("run", write(tmp_path, GOOD))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith("b: ")


def test_task_failure_exit_4_one_line(tmp_path: Path) -> None:
    proc = run_cli("run", write(tmp_path, FAILING))
    assert proc.returncode == 4
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_debug_adds_traceback(tmp_path: Path) -> None:
    proc = run_cli("--debug", "run", write(tmp_path, FAILING))
    assert proc.returncode == 4
    assert "Traceback" in proc.stderr


def test_validate_ok_and_invalid(tmp_path: Path) -> None:
    ok = run_cli("validate", write(tmp_path, GOOD), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"valid": True, "name": "two steps", "tasks": 2}
    bad = write(tmp_path, GOOD.replace("dependencies: [a]", "dependencies: [zz]"), "bad.yaml")
    proc = run_cli("validate", bad, "--json")
    assert proc.returncode == 3
    doc = json.loads(proc.stdout)
    assert doc["valid"] is False
    assert "zz" in json.dumps(doc["problems"])
    plain = run_cli("validate", bad)
    assert plain.returncode == 3
    assert "zz" in plain.stderr


CYCLE = """\
name: loop
tasks:
  - id: a
    method: python/execute
    params: {code: "result = 1"}
    dependencies: [b]
  - id: b
    method: python/execute
    params: {code: "result = 2"}
    dependencies: [a]
"""


def test_validate_a_cycle_exits_3_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, CYCLE)
    plain = run_cli("validate", path)
    assert plain.returncode == 3
    assert "'a' -> 'b' -> 'a'" in plain.stderr
    as_json = run_cli("validate", path, "--json")
    assert as_json.returncode == 3
    doc = json.loads(as_json.stdout)
    assert doc["code"] == "WORKFLOW_CIRCULAR_DEPENDENCY"
    assert doc["cycle"] == ["a", "b"]


def test_run_invalid_exit_3(tmp_path: Path) -> None:
    proc = run_cli("run", write(tmp_path, GOOD.replace("python/execute", "nosuch/method", 1)))
    assert proc.returncode == 3, proc.stderr


def test_graph_mermaid_and_dot(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    mermaid = run_cli("graph", path)
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.splitlines()[0] == "graph TD"
    assert "t0 --> t1" in mermaid.stdout
    dot = run_cli("graph", path, "--format", "dot")
    assert dot.returncode == 0
    assert '"a" -> "b";' in dot.stdout
    assert dot.stdout.startswith('digraph "two steps"')


def test_usage_error_exit_2(tmp_path: Path) -> None:
    assert run_cli("run").returncode == 2
    assert run_cli("--persistence", "bogus", "workflow", "list").returncode == 2


def test_stored_workflow_commands(tmp_path: Path) -> None:
    db = str(tmp_path / "g.db")
    store = ["--persistence", "sqlite", "--db-path", db]
    assert run_cli(*store, "run", write(tmp_path, GOOD)).returncode == 0
    listed = run_cli(*store, "workflow", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (info,) = json.loads(listed.stdout)
    assert info["status"] == "completed"
    assert info["completed_tasks"] == 2
    status = run_cli(*store, "workflow", "status", info["id"], "--json")
    assert json.loads(status.stdout)["id"] == info["id"]
    result = run_cli(*store, "task", "result", info["id"], "b")
    assert result.returncode == 0
    assert json.loads(result.stdout)["result"] == 42
    missing = run_cli(*store, "workflow", "status", "no-such-id")
    assert missing.returncode == 6
    assert missing.stderr.startswith("error: ")
    system = run_cli(*store, "system", "status", "--json")
    assert json.loads(system.stdout)["workflows"] == 1


def test_env_selects_store(tmp_path: Path) -> None:
    db = str(tmp_path / "e.db")
    env = {"GLEITZEIT_PERSISTENCE_BACKEND": "sqlite", "GLEITZEIT_SQLITE_PATH": db}
    assert run_cli("run", write(tmp_path, GOOD), env=env).returncode == 0
    listed = run_cli("workflow", "list", "--json", env=env)
    assert len(json.loads(listed.stdout)) == 1


def test_exec_json() -> None:
    proc = run_cli("exec", "result = 6 * 7", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"] == 42


@pytest.mark.parametrize("name", ["EXIT_CODES"])
def test_exit_codes_documented(name: str) -> None:
    from gleitzeit import cli

    doc = Path(__file__).parent.parent.joinpath("docs", "CLI.md").read_text()
    for code in getattr(cli, name):
        assert f"| {code} |" in doc


def test_provider_list_names_builtin_methods() -> None:
    proc = run_cli("provider", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    methods = {m["name"] for entry in json.loads(proc.stdout) for m in entry["methods"]}
    assert {"python/execute", "llm/chat"} <= methods


def test_provider_health_unreachable_ollama_exit_5() -> None:
    proc = run_cli("--ollama-url", "http://127.0.0.1:9", "provider", "health", "--json")
    assert proc.returncode == 5, proc.stderr
    health = json.loads(proc.stdout)
    assert any(entry.get("reachable") is False for entry in health)


def test_sigint_exits_130(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    wf = write(
        tmp_path,
        f"""
name: slow
tasks:
  - id: slow
    method: python/execute
    params:
      code: "import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
""",
    )
    err = interrupt_when(
        marker.exists, [*GLEITZEIT, "run", wf], GLEITZEIT_PERSISTENCE_BACKEND="memory"
    )
    assert "Traceback" not in err


CHAIN = """
name: chain
tasks:
  - id: step1
    method: python/execute
    params: {code: "import time; time.sleep(0.3); result = 1"}
  - id: step2
    method: python/execute
    dependencies: [step1]
    params: {code: "import time; time.sleep(0.3); result = 2"}
  - id: step3
    method: python/execute
    dependencies: [step2]
    params: {code: "import time; time.sleep(0.3); result = 3"}
  - id: step4
    method: python/execute
    dependencies: [step3]
    params: {code: "import time; time.sleep(0.3); result = 4"}
"""
#: The installed console script, next to this interpreter.
SCRIPT = str(Path(sys.executable).with_name("gleitzeit"))


def run_in_pty(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the console script with a pseudo-terminal as its stdin, stdout and stderr.

    Returns the exit code and everything it wrote to the terminal.
    """
    import select

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    full_env.update(
        GLEITZEIT_PERSISTENCE_BACKEND="memory", TERM="xterm-256color", COLUMNS="100", LINES="30"
    )
    full_env.update(env or {})
    full_env.pop("NO_COLOR", None)
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [SCRIPT, *args], stdin=slave, stdout=slave, stderr=slave, env=full_env
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:  # pragma: no cover - only when the test fails
            proc.kill()
            proc.wait()
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_run_on_a_terminal_shows_live_progress(tmp_path: Path) -> None:
    """On a real pseudo-terminal `run` draws a live display (ANSI) whose done count
    moves through every step, names the running task, and ends with a summary line
    before the results."""
    import re

    code, screen = run_in_pty("run", write(tmp_path, CHAIN))
    assert code == 0, screen
    assert "\x1b[" in screen  # drawn for a terminal
    seen = {int(n) for n in re.findall(r"done (\d)/4", screen)}
    assert {1, 2, 3, 4} <= seen, screen
    assert "running: step2" in screen
    summary = screen.index("✓ chain: completed: 4/4 completed in ")
    assert summary < screen.index('step1: {"result": 1')


def test_run_on_a_terminal_failure_summary_then_error_line(tmp_path: Path) -> None:
    """A failing run on a terminal ends its display with a ✗ summary, then the one error line."""
    code, screen = run_in_pty("run", write(tmp_path, FAILING))
    assert code == 4, screen
    assert "✗ fails: failed: 0/1 completed, 1 failed in " in screen
    assert screen.index("✗ fails") < screen.index("error: ")


def test_run_through_pipes_has_no_live_display(tmp_path: Path) -> None:
    """Through pipes there is no live display and no ANSI code; stderr stays empty."""
    proc = subprocess.run(
        [SCRIPT, "run", write(tmp_path, CHAIN)],
        capture_output=True,
        text=True,
        env={**os.environ, "GLEITZEIT_PERSISTENCE_BACKEND": "memory", "TERM": "xterm-256color"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert [line.split(":")[0] for line in proc.stdout.splitlines()] == [
        "step1",
        "step2",
        "step3",
        "step4",
    ]


def test_tables_on_a_terminal_and_plain_through_pipes(tmp_path: Path) -> None:
    """`workflow list` and `provider list` draw tables on a terminal; through a pipe
    they print plain lines with no box drawing or ANSI codes."""
    db = str(tmp_path / "t.db")
    store = ["--persistence", "sqlite", "--db-path", db]
    assert run_cli(*store, "run", write(tmp_path, GOOD)).returncode == 0
    code, screen = run_in_pty(*store, "workflow", "list")
    assert code == 0, screen
    assert "two steps" in screen
    assert "┃" in screen or "│" in screen
    plain = run_cli(*store, "workflow", "list")
    assert plain.returncode == 0, plain.stderr
    (line,) = plain.stdout.splitlines()
    assert "completed  2/2  0  two steps" in line
    assert "\x1b" not in plain.stdout
    code, screen = run_in_pty("provider", "list")
    assert code == 0, screen
    assert "python/execute" in screen
    assert "│" in screen or "┃" in screen


def test_workflow_submit_then_status_resume_cancel_across_processes(tmp_path: Path) -> None:
    """`workflow submit` stores a workflow pending and prints its id; another process
    sees it pending and `workflow resume` runs it; a second submitted workflow is
    cancelled by `workflow cancel` (and stays so); the memory store is refused."""
    db = str(tmp_path / "s.db")
    store = ["--persistence", "sqlite", "--db-path", db]
    submitted = run_cli(*store, "workflow", "submit", write(tmp_path, GOOD))
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()
    assert f"gleitzeit workflow resume {workflow_id}" in submitted.stderr
    status = json.loads(run_cli(*store, "workflow", "status", workflow_id, "--json").stdout)
    assert status["status"] == "pending"
    assert [t["status"] for t in status["tasks"]] == ["pending", "pending"]
    resumed = run_cli(*store, "workflow", "resume", workflow_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["b"]["result"] == 42
    status = json.loads(run_cli(*store, "workflow", "status", workflow_id, "--json").stdout)
    assert (status["status"], status["completed_tasks"]) == ("completed", 2)

    second = run_cli(*store, "workflow", "submit", write(tmp_path, GOOD, "w2.yaml"), "--json")
    other = json.loads(second.stdout)
    assert other["status"] == "pending"
    cancelled = run_cli(*store, "workflow", "cancel", other["workflow_id"], "--json")
    assert json.loads(cancelled.stdout) == {
        "workflow_id": other["workflow_id"],
        "cancelled": True,
        "status": "cancelled",
    }
    again = run_cli(*store, "workflow", "cancel", other["workflow_id"])
    assert again.returncode == 0
    assert "not cancelled: it is cancelled already" in again.stdout
    assert run_cli(*store, "workflow", "cancel", "no-such-id").returncode == 6
    memory = run_cli("--persistence", "memory", "workflow", "submit", write(tmp_path, GOOD))
    assert memory.returncode == 2
    assert "durable store" in memory.stderr


def _batch_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(4):
        (folder / f"d{i}.txt").write_text(f"document {i}")
    (folder / "skip.md").write_text("not matched")
    return folder


def test_batch_json_and_markdown_output(tmp_path: Path, ollama: FakeOllama) -> None:
    """`batch DIR --pattern --prompt --json` prints the BatchResult document; --output
    .md saves Markdown; a binary file fails its own entry only and the exit code is 4."""
    folder = _batch_dir(tmp_path)
    ok = run_cli(
        "--ollama-url",
        ollama.url,
        "batch",
        str(folder),
        "--pattern",
        "*.txt",
        "--prompt",
        "Summarize",
        "--json",
        "--output",
        str(tmp_path / "out.json"),
    )
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert (doc["total_files"], doc["successful"], doc["failed"]) == (4, 4, 0)
    assert sorted(Path(p).name for p in doc["results"]) == [f"d{i}.txt" for i in range(4)]
    assert json.loads((tmp_path / "out.json").read_text())["successful"] == 4
    (folder / "bad.txt").write_bytes(b"\x00\x01binary")
    md = tmp_path / "out.md"
    bad = run_cli(
        "--ollama-url",
        ollama.url,
        "batch",
        str(folder),
        "--pattern",
        "*.txt",
        "--output",
        str(md),
    )
    assert bad.returncode == 4, bad.stderr
    assert bad.stdout.startswith("batch ")
    assert "4/5 files succeeded" in bad.stdout
    assert "binary" in bad.stdout
    assert bad.stderr.startswith("error: 1 of 5 files failed")
    assert "d0.txt" in md.read_text()


def test_batch_on_a_terminal_shows_progress(tmp_path: Path, ollama: FakeOllama) -> None:
    """On a pseudo-terminal `batch` shows its counts moving and ends with a summary."""
    import re

    folder = _batch_dir(tmp_path)
    ollama.latency = 0.3
    code, screen = run_in_pty(
        "--ollama-url",
        ollama.url,
        "batch",
        str(folder),
        "--pattern",
        "*.txt",
        "--max-concurrent",
        "1",
    )
    assert code == 0, screen
    seen = {int(n) for n in re.findall(r"done (\d)/4", screen)}
    assert {1, 2, 3, 4} <= seen, screen
    assert "completed: 4/4 completed in " in screen


def test_exec_a_script_file_and_usage_errors(tmp_path: Path) -> None:
    """`exec --file SCRIPT` runs a script; giving both or neither of CODE and --file is
    a usage error (exit 2); a script that raises exits 4."""
    script = tmp_path / "s.py"
    script.write_text("print('hi'); result = {'n': 3}")
    proc = run_cli("exec", "--file", str(script), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["result"], out["stdout"]) == ({"n": 3}, "hi\n")
    assert run_cli("exec").returncode == 2
    assert run_cli("exec", "result = 1", "--file", str(script)).returncode == 2
    script.write_text("raise ValueError('bad')")
    failed = run_cli("exec", "--file", str(script))
    assert failed.returncode == 4
    assert "ValueError" in failed.stderr


def test_sigint_on_sqlite_leaves_no_process_and_the_run_resumable(tmp_path: Path) -> None:
    """Ctrl-C during a durable run exits 130, leaves no worker process behind, and
    records the run cancelled; `workflow resume` finishes it without rerunning the
    completed task."""
    marker, count = tmp_path / "pid", tmp_path / "count"
    wf = write(
        tmp_path,
        f"""
id: interrupted
name: interrupted
tasks:
  - id: first
    method: python/execute
    params:
      code: |
        import pathlib
        p = pathlib.Path({str(count)!r})
        p.write_text(p.read_text() + 'x' if p.exists() else 'x')
        result = 1
  - id: slow
    method: python/execute
    dependencies: [first]
    params:
      code: |
        import os, pathlib, time
        m = pathlib.Path({str(marker)!r})
        again = m.exists()
        m.write_text(str(os.getpid()))
        time.sleep(0 if again else 60)
        result = 'done'
""",
    )
    store = ["--persistence", "sqlite", "--db-path", str(tmp_path / "i.db")]
    err = interrupt_when(
        lambda: marker.exists() and bool(marker.read_text()), [SCRIPT, *store, "run", wf]
    )
    assert err.strip().splitlines()[-1] == "interrupted"
    worker = int(marker.read_text())
    assert wait_until(lambda: not alive(worker), 10)
    status = run_cli(*store, "workflow", "status", "interrupted", "--json")
    assert json.loads(status.stdout)["status"] == "cancelled"
    resumed = run_cli(*store, "workflow", "resume", "interrupted", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["slow"]["result"] == "done"
    assert count.read_text() == "x"  # the completed task did not run again


def test_workflow_compact_on_a_journal(tmp_path: Path) -> None:
    """`workflow compact` shrinks a journal and keeps its workflows; on another store it
    exits 2 saying only journals need it."""
    store = ["--persistence", "journal", "--db-path", str(tmp_path / "j.jsonl")]
    for _ in range(3):
        assert run_cli(*store, "run", write(tmp_path, GOOD)).returncode == 0
    proc = run_cli(*store, "workflow", "compact", "--json")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["runs"] == 3
    assert stats["bytes_after"] < stats["bytes_before"]
    listed = json.loads(run_cli(*store, "workflow", "list", "--json").stdout)
    assert [w["status"] for w in listed] == ["completed"] * 3
    plain = run_cli(*store, "workflow", "compact")
    assert plain.stdout.startswith("compacted: 3 workflows kept")
    other = run_cli(
        "--persistence", "sqlite", "--db-path", str(tmp_path / "s.db"), "workflow", "compact"
    )
    assert other.returncode == 2
    assert "journal" in other.stderr
