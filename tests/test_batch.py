"""Batches end to end: real files in tmp_path, the loopback fake Ollama, real workers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio

from gleitzeit import BatchResult, EventKind, GleitzeitClient, SyncGleitzeitClient
from gleitzeit._batch import files_in_flight, task_ids
from gleitzeit._batch_files import expand_braces, find_files, pattern_regex
from gleitzeit.core.errors import (
    ConfigurationError,
    ErrorCode,
    GleitzeitError,
    TaskError,
    WorkflowError,
)
from gleitzeit.testing import FakeOllama

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gleitzeit import Event

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a3b1b1c50000000049454e44ae426082"
)
JPG = b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9"
ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.anyio
MODEL = "llama3.2:latest"


def client(url: str = "http://127.0.0.1:9", **options: Any) -> GleitzeitClient:
    options.setdefault("persistence", "memory")
    return GleitzeitClient(ollama_url=url, **options)


def write(path: Path, text: str = "hello") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def expected_reply(prompt: str, path: Path) -> str:
    """What the fake answers for a prompt with one attached text file."""
    text = path.read_text(encoding="utf-8")
    return FakeOllama.reply_for(MODEL, f"{prompt}\n\nFile content from {path}:\n{text}")


def check_error(error: GleitzeitError, code: ErrorCode, *words: str) -> None:
    """A user error: its code, a message naming what to fix, and data."""
    assert error.code == code
    assert error.data
    for word in words:
        assert word in error.message, (word, error.message)


# --- discovery (pure, blocking) ------------------------------------------------------


def test_braces_expand_in_order_and_nest() -> None:
    """`{a,b}` alternatives expand left to right, nested ones too; odd braces stay."""
    assert expand_braces("*.{jpg,png,jpeg}") == ["*.jpg", "*.png", "*.jpeg"]
    assert expand_braces("{a,b{c,d}}.txt") == ["a.txt", "bc.txt", "bd.txt"]
    assert expand_braces("x{y}.md") == ["x{y}.md"]
    assert expand_braces("{open") == ["{open"]


def test_patterns_follow_the_contract() -> None:
    """`*` stays in its folder; `**/` spans zero or more folders; hidden names hide."""
    top = pattern_regex("*.txt")
    assert top.fullmatch("a.txt")
    assert not top.fullmatch("d/a.txt")
    deep = pattern_regex("**/*.txt")
    assert deep.fullmatch("a.txt")
    assert deep.fullmatch("d/e/a.txt")
    assert not deep.fullmatch(".git/a.txt")
    assert not deep.fullmatch("d/.a.txt")
    assert pattern_regex(".*").fullmatch(".env")
    assert pattern_regex("*.txt", recursive=True).fullmatch("d/a.txt")
    assert pattern_regex("[ab]?.c").fullmatch("ax.c")
    assert not pattern_regex("[!ab]?.c").fullmatch("ax.c")
    assert pattern_regex("d/**").fullmatch("d/e/f")


def test_find_files_sorts_dedups_and_skips_folders(tmp_path: Path) -> None:
    """Files only, sorted, once each (overlapping braces); dangling links kept."""
    for name in ("b.md", "a.md", "sub/c.md", "sub/deep/d.md", "notes.txt", ".hidden/e.md"):
        write(tmp_path / name)
    (tmp_path / "folder.md").mkdir()
    (tmp_path / "gone.md").symlink_to(tmp_path / "nowhere.md")
    os.mkfifo(tmp_path / "pipe.md")
    assert find_files(tmp_path, "*.md") == ["a.md", "b.md", "gone.md"]
    assert find_files(tmp_path, "**/*.md") == [
        "a.md",
        "b.md",
        "gone.md",
        "sub/c.md",
        "sub/deep/d.md",
    ]
    assert find_files(tmp_path, "*.{md,md,txt}") == ["a.md", "b.md", "gone.md", "notes.txt"]
    assert find_files(tmp_path, "*.md", recursive=True) == find_files(tmp_path, "**/*.md")
    assert find_files(tmp_path, ".hidden/*.md") == [".hidden/e.md"]


def test_find_files_does_not_loop_on_a_link_cycle(tmp_path: Path) -> None:
    """A symlinked folder is not descended into, so a cycle ends."""
    write(tmp_path / "d/a.md")
    (tmp_path / "d/loop").symlink_to(tmp_path / "d")
    assert find_files(tmp_path, "**/*.md") == ["d/a.md"]


def test_task_ids_are_unique_and_stable() -> None:
    """`file-<slug>` ids: the same paths give the same ids; clashes get a number."""
    keys = ["docs/A.md", "docs/a.md", "docs/a-md", "x" * 200]
    ids = task_ids(keys)
    assert ids[:3] == ["file-docs-a-md", "file-docs-a-md-2", "file-docs-a-md-3"]
    assert len(set(ids)) == 4
    assert len(ids[3]) < 100
    assert task_ids(keys) == ids


def test_files_in_flight_resolves_bounds_in_one_place() -> None:
    """Defaults never lower a batch's bound; bounds the user set do, per method."""
    assert files_in_flight(20, "llm/chat", ollama_max_in_flight=None, workers=None) == 20
    assert files_in_flight(20, "llm/chat", ollama_max_in_flight=3, workers=2) == 3
    assert files_in_flight(20, "python/execute", ollama_max_in_flight=3, workers=2) == 2
    assert files_in_flight(5, "python/execute", ollama_max_in_flight=None, workers=8) == 5


# --- batch_process over the fake Ollama ---------------------------------------------


async def test_nested_folder_with_double_star(tmp_path: Path, ollama: FakeOllama) -> None:
    """`**/*.md` takes every markdown file at any depth, each answered by the LLM."""
    docs = tmp_path / "docs"
    paths = [write(docs / "a.md", "alpha"), write(docs / "sub/b.md", "beta")]
    paths.append(write(docs / "sub/deep/c.md", "gamma"))
    write(docs / "skip.txt", "not markdown")
    async with client(ollama.url) as c:
        result = await c.batch_process(
            directory=str(docs), pattern="**/*.md", prompt="Summarise", max_concurrent=3
        )
    assert isinstance(result, BatchResult)
    assert (result.total_files, result.successful, result.failed) == (3, 3, 0)
    assert list(result.results) == [str(p) for p in paths]
    for path in paths:
        entry = result.results[str(path)]
        assert entry["status"] == "success"
        assert entry["error"] is None
        assert entry["content"] == expected_reply("Summarise", path)
        assert entry["duration"] >= 0.0
    assert result.batch_id.startswith("batch-")


async def test_bad_files_fail_only_their_entries(tmp_path: Path, ollama: FakeOllama) -> None:
    """A binary file, a missing file and a dangling symlink fail their own entries."""
    good = write(tmp_path / "good.txt", "fine text")
    binary = tmp_path / "data.bin"
    binary.write_bytes(b"\x00\x01\x02binary")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    big = write(tmp_path / "big.txt", "x" * (1 << 20 + 1))
    dangling = tmp_path / "link.txt"
    dangling.symlink_to(tmp_path / "nowhere.txt")
    missing = tmp_path / "missing.txt"
    files = [str(p) for p in (good, binary, latin, big, dangling, missing)]
    async with client(ollama.url) as c:
        result = await c.batch_process(files=files, prompt="Read")
    assert (result.total_files, result.successful, result.failed) == (6, 1, 5)
    assert result.results[str(good)]["content"] == expected_reply("Read", good)
    errors = {Path(k).name: v["error"] for k, v in result.results.items() if v["error"]}
    assert "binary" in errors["data.bin"]
    assert "UTF-8" in errors["latin.txt"]
    assert "bytes" in errors["big.txt"]
    assert "dangling symlink" in errors["link.txt"]
    assert "nowhere.txt" in errors["link.txt"]
    assert "not found" in errors["missing.txt"]
    for entry in result.results.values():
        if entry["status"] == "failed":
            assert entry["content"] is None
    # Only the good file reached the server.
    assert len([r for r in ollama.requests if r.method == "POST"]) == 1


async def test_result_saves_round_trip_and_markdown_names_every_file(
    tmp_path: Path, ollama: FakeOllama
) -> None:
    """save_to_json round-trips the six fields; the markdown names each file."""
    write(tmp_path / "in/one.txt", "1")
    write(tmp_path / "in/two.txt", "2")
    (tmp_path / "in/three.txt").symlink_to(tmp_path / "nope")
    async with client(ollama.url) as c:
        result = await c.batch_process(directory=str(tmp_path / "in"), pattern="*.txt")
    saved = json.loads(result.save_to_json(tmp_path / "out/r.json").read_text())
    for key in ("batch_id", "total_files", "successful", "failed", "duration", "results"):
        assert saved[key] == json.loads(json.dumps(getattr(result, key)))
    assert BatchResult.from_dict(saved) == result
    markdown = result.save_to_markdown(tmp_path / "out/r.md").read_text(encoding="utf-8")
    for name in ("one.txt", "two.txt", "three.txt"):
        assert name in markdown
    assert "| File |" in markdown
    assert markdown.index("| File |") < markdown.index("## ")


async def test_max_concurrent_is_reached_and_holds_above_the_default_host_bound(
    tmp_path: Path,
) -> None:
    """20 files in flight at the server, no more: the default bound of 16 widens."""
    for i in range(30):
        write(tmp_path / f"f{i:02}.txt", f"file {i}")
    with FakeOllama() as ollama:  # its own server: nothing else in flight
        ollama.hold(20)
        async with client(ollama.url) as c:
            result = await c.batch_process(directory=str(tmp_path), max_concurrent=20)
    assert result.successful == 30
    assert ollama.max_in_flight == 20


async def test_an_explicit_ollama_bound_still_holds(tmp_path: Path) -> None:
    """ollama_max_in_flight set by the user lowers the batch's bound (and is reached)."""
    for i in range(12):
        write(tmp_path / f"f{i:02}.txt", f"file {i}")
    with FakeOllama() as ollama:
        ollama.hold(3)
        async with client(ollama.url, ollama_max_in_flight=3) as c:
            result = await c.batch_process(directory=str(tmp_path), max_concurrent=10)
    assert result.successful == 12
    assert ollama.max_in_flight == 3


async def test_vision_over_png_and_jpg_with_braces(tmp_path: Path, ollama: FakeOllama) -> None:
    """batch_vision's default brace pattern takes .png/.jpg/.jpeg, one image each."""
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.jpg").write_bytes(JPG)
    (tmp_path / "c.gif").write_bytes(b"GIF89a")
    write(tmp_path / "d.txt")
    async with client(ollama.url) as c:
        result = await c.batch_vision(str(tmp_path), prompt="What is it?")
    assert sorted(Path(k).name for k in result.results) == ["a.png", "b.jpg"]
    for entry in result.results.values():
        assert entry["content"] == FakeOllama.reply_for("llava:latest", "What is it?", 1)
    bodies = [r.body for r in ollama.requests if r.method == "POST"]
    assert all(b["model"] == "llava:latest" for b in bodies)
    assert all(len(b["messages"][-1]["images"]) == 1 for b in bodies)


async def test_progress_reaches_on_event(tmp_path: Path, ollama: FakeOllama) -> None:
    """on_event hears a start and a completion for every file of a batch."""
    seen: list[Event] = []

    def listen(events: Sequence[Event]) -> None:
        seen.extend(events)

    for i in range(4):
        write(tmp_path / f"{i}.txt", str(i))
    async with client(ollama.url, on_event=listen) as c:
        result = await c.batch_process(directory=str(tmp_path))
    ids = {entry["task_id"] for entry in result.results.values()}
    started = {e.task_id for e in seen if e.kind is EventKind.TASK_STARTED}
    completed = {e.task_id for e in seen if e.kind is EventKind.TASK_COMPLETED}
    assert ids == started == completed
    assert [e.kind for e in seen][-1] is EventKind.WORKFLOW_FINISHED


# --- batch_python with real workers ---------------------------------------------------

CSV_SCRIPT = """
import csv, os
with open(args["file_path"], newline="") as f:
    rows = list(csv.reader(f))
assert context["file_path"] == args["file_path"] == file_path
result = {"file": os.path.basename(file_path), "rows": len(rows) - 1,
          "total": sum(int(r[1]) for r in rows[1:])}
"""


async def test_batch_python_over_csv_files(tmp_path: Path) -> None:
    """The script reads args/context; its non-string result becomes JSON content."""
    script = write(tmp_path / "sum.py", CSV_SCRIPT)
    files = []
    for i in range(1, 4):
        rows = "\n".join(f"r{j},{j * i}" for j in range(1, i + 1))
        files.append(str(write(tmp_path / f"data{i}.csv", f"name,value\n{rows}\n")))
    files.append(str(tmp_path / "absent.csv"))
    async with client() as c:
        result = await c.batch_python(str(script), files, max_concurrent=3)
    assert (result.successful, result.failed) == (3, 1)
    content = json.loads(result.results[files[1]]["content"])
    assert content == {"file": "data2.csv", "rows": 2, "total": 6}
    assert "absent.csv" in result.results[files[3]]["error"]


async def test_batch_python_string_result_is_the_content(tmp_path: Path) -> None:
    """A string result is the content as it is (not JSON-quoted); None becomes null."""
    code = "from pathlib import Path\nresult = Path(file_path).read_text().upper() or None"
    script = write(tmp_path / "s.py", code)
    a, b = write(tmp_path / "a.txt", "abc"), write(tmp_path / "b.txt", "")
    async with client(isolation="inline") as c:
        result = await c.batch_python(str(script), [str(a), str(b)])
    assert result.results[str(a)]["content"] == "ABC"
    assert result.results[str(b)]["content"] == "null"


GATE_SCRIPT = """
import os, time
name = os.path.basename(file_path)
started, running = os.path.join(args["gate"], "started"), os.path.join(args["gate"], "running")
open(os.path.join(running, name), "w").close()
peak = len(os.listdir(running))  # scripts in flight now, this one included
open(os.path.join(started, name), "w").close()
deadline = time.monotonic() + 20
# No script ends before `want` have started: the first `want` are in flight together.
while len(os.listdir(started)) < args["want"] and time.monotonic() < deadline:
    time.sleep(0.005)
result = {"peak": peak, "waited_out": time.monotonic() >= deadline}
os.remove(os.path.join(running, name))
"""


@pytest.mark.parametrize(("workers", "expect"), [(None, 4), (2, 2)])
async def test_python_batch_keeps_max_concurrent_in_flight(
    tmp_path: Path, workers: int | None, expect: int
) -> None:
    """Each script waits until `expect` scripts run at once: the bound is reached,
    never passed; a `workers` cap the user set lowers it."""
    gate = tmp_path / "gate"
    (gate / "started").mkdir(parents=True)
    (gate / "running").mkdir()
    doc = {
        "name": "gated",
        "type": "batch",
        "batch": {"directory": str(tmp_path / "in")},
        "template": {
            "method": "python/execute",
            "code": GATE_SCRIPT,
            "args": {"gate": str(gate), "want": expect},
        },
        "max_parallel_tasks": 4,
    }
    for i in range(8):
        write(tmp_path / f"in/{i}.txt")
    async with client(workers=workers) as c:
        results = await c.run_workflow(doc)
    outcomes = [r["result"] for r in results.values()]
    assert len(outcomes) == 8
    assert not any(o["waited_out"] for o in outcomes)
    assert max(o["peak"] for o in outcomes) == expect  # reached, and never more
    assert c._python.pool.size == workers


# --- batch documents ---------------------------------------------------------------


async def test_batch_document_from_a_file(tmp_path: Path, ollama: FakeOllama) -> None:
    """A YAML batch document: directory relative to its file, recursive, stable ids."""
    docs = tmp_path / "project/docs"
    write(docs / "a.txt", "A")
    write(docs / "sub/b.txt", "B")
    doc = tmp_path / "project/batch.yaml"
    doc.write_text(
        "name: summaries\n"
        "type: batch\n"
        "batch: {directory: docs, pattern: '*.txt', recursive: true}\n"
        f"template: {{method: llm/chat, model: {MODEL}, prompt: Summarise}}\n"
    )
    async with client(ollama.url) as c:
        results = await c.run_workflow(str(doc))
    assert list(results) == ["file-docs-a-txt", "file-docs-sub-b-txt"]
    assert results["file-docs-a-txt"]["response"] == expected_reply("Summarise", docs / "a.txt")


async def test_template_params_are_not_shared(tmp_path: Path) -> None:
    """Each task gets its own copy of the template's args (the old system's bug)."""
    for name in ("x.dat", "y.dat", "z.dat"):
        write(tmp_path / name)
    doc = {
        "name": "own params",
        "batch": {"directory": str(tmp_path), "pattern": "*.dat"},
        "template": {
            "method": "python/execute",
            "params": {"code": "result = context['file_path']", "context": {"k": 1}},
        },
    }
    async with client(isolation="inline") as c:
        results = await c.run_workflow(doc)
    assert [r["result"] for r in results.values()] == [str(tmp_path / f"{n}.dat") for n in "xyz"]
    assert doc["template"]["params"]["context"] == {"k": 1}  # type: ignore[index]


async def test_a_failed_file_does_not_stop_the_others_in_a_document(tmp_path: Path) -> None:
    """run_workflow on a batch document runs every file; the first failure is raised
    with the other files' results."""
    write(tmp_path / "a.txt", "ok")
    write(tmp_path / "b.txt", "boom")
    write(tmp_path / "c.txt", "ok")
    doc = {
        "name": "mixed",
        "type": "batch",
        "batch": {"directory": str(tmp_path)},
        "template": {
            "method": "python/execute",
            "code": (
                "from pathlib import Path\nt = Path(file_path).read_text()\n"
                "assert t == 'ok', t\nresult = t"
            ),
        },
    }
    async with client(isolation="inline") as c:
        with pytest.raises(TaskError) as info:
            await c.run_workflow(doc)
    assert info.value.data["task_id"] == task_ids([str(tmp_path / "b.txt")])[0]
    assert set(info.value.data["results"]) == set(
        task_ids([str(tmp_path / "a.txt"), str(tmp_path / "c.txt")])
    )


# --- user errors -----------------------------------------------------------------------


async def test_user_errors_have_codes_messages_and_data(tmp_path: Path) -> None:
    """Every wrong call fails before anything runs, saying what to fix."""
    write(tmp_path / "a.txt")
    async with client() as c:
        with pytest.raises(WorkflowError) as info:
            await c.batch_process()
        check_error(info.value, ErrorCode.WORKFLOW_VALIDATION_FAILED, "directory", "files")
        with pytest.raises(WorkflowError) as info:
            await c.batch_process(directory=str(tmp_path / "nope"))
        check_error(info.value, ErrorCode.WORKFLOW_VALIDATION_FAILED, "does not exist")
        with pytest.raises(WorkflowError) as info:
            await c.batch_process(directory=str(tmp_path / "a.txt"))
        check_error(info.value, ErrorCode.WORKFLOW_VALIDATION_FAILED, "not a directory")
        with pytest.raises(WorkflowError) as info:
            await c.batch_process(directory=str(tmp_path), pattern="*.md")
        check_error(info.value, ErrorCode.WORKFLOW_VALIDATION_FAILED, "no file", "*.md")
        with pytest.raises(WorkflowError) as info:
            await c.batch_process(directory=str(tmp_path), pattern="../*.txt")
        check_error(info.value, ErrorCode.WORKFLOW_VALIDATION_FAILED, "..")
        with pytest.raises(WorkflowError) as info:
            await c.batch_process(directory=str(tmp_path), max_concurrent=0)
        check_error(info.value, ErrorCode.WORKFLOW_VALIDATION_FAILED, "max_parallel_tasks")
        with pytest.raises(WorkflowError) as info:
            await c.batch_process(files=str(tmp_path / "a.txt"))  # type: ignore[arg-type]
        check_error(info.value, ErrorCode.WORKFLOW_VALIDATION_FAILED, "list")
        with pytest.raises(WorkflowError) as info:
            await c.batch_process(files=[])
        check_error(info.value, ErrorCode.WORKFLOW_VALIDATION_FAILED, "files")
        with pytest.raises(WorkflowError) as info:
            await c.batch_process(directory=str(tmp_path), method="llm/chatt")
        check_error(info.value, ErrorCode.WORKFLOW_VALIDATION_FAILED, "llm/chat")
        with pytest.raises(WorkflowError) as info:
            await c.batch_python(str(tmp_path / "missing.py"), [str(tmp_path / "a.txt")])
        check_error(info.value, ErrorCode.WORKFLOW_VALIDATION_FAILED, "missing.py")


def test_a_bad_ollama_bound_is_a_configuration_error() -> None:
    """ollama_max_in_flight below 1 is refused when the client is made."""
    with pytest.raises(ConfigurationError) as info:
        GleitzeitClient(persistence="memory", ollama_max_in_flight=0)
    check_error(info.value, ErrorCode.CONFIGURATION_ERROR, "ollama_max_in_flight")


async def test_cancelling_a_batch_raises_with_the_partial_result(tmp_path: Path) -> None:
    """A batch cut short as a whole raises WORKFLOW_CANCELLED with what finished."""
    gate = tmp_path / "gate"
    for i in range(4):
        write(tmp_path / f"in/{i}.txt")
    script = write(
        tmp_path / "wait.py",
        f"import os, time\nopen(os.path.join({str(tmp_path)!r}, 'started'), 'w').close()\n"
        f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.01)\nresult = 1\n",
    )
    files = sorted(str(p) for p in (tmp_path / "in").iterdir())
    async with client() as c:

        async def cancel_when_started() -> None:
            with anyio.fail_after(30):
                while not (tmp_path / "started").exists():  # noqa: ASYNC110 - another process
                    await anyio.sleep(0.01)
                while not c._runs:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            await c.cancel_workflow(next(iter(c._runs)))

        caught: list[WorkflowError] = []

        async def run() -> None:
            try:
                await c.batch_python(str(script), files, max_concurrent=2)
            except WorkflowError as exc:
                caught.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await cancel_when_started()
    (error,) = caught
    check_error(error, ErrorCode.WORKFLOW_CANCELLED, "cancelled")
    partial = error.data["batch"]
    assert partial["total_files"] == 4
    assert partial["successful"] == 0
    assert all("resume_workflow" in e["error"] for e in partial["results"].values())


# --- the sync twin -------------------------------------------------------------------


def test_sync_twin_runs_a_batch(tmp_path: Path, ollama: FakeOllama) -> None:
    """SyncGleitzeitClient.batch_process returns the same BatchResult."""
    path = write(tmp_path / "a.txt", "sync")
    with SyncGleitzeitClient(persistence="memory", ollama_url=ollama.url) as c:
        result = c.batch_process(files=[str(path)], prompt="Hi")
    assert result.results[str(path)]["content"] == expected_reply("Hi", path)


# --- crash and resume -------------------------------------------------------------------

CRASH_SCRIPT = """
import os, time
name = os.path.basename(file_path)
fd = os.open(SIDE, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(fd, (name + "\\n").encode())
os.close(fd)
if int(name[1:3]) >= 4:  # the later files wait for a release that comes after the kill
    release = os.path.join(os.path.dirname(file_path), "release")
    while not os.path.exists(release):
        time.sleep(0.01)
result = name.upper()
"""


def _completed(db_path: Path, workflow_id: str) -> set[str]:
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute(
            "SELECT task_id FROM tasks WHERE workflow_id = ? AND status = 'completed'",
            (workflow_id,),
        ).fetchall()
    except sqlite3.OperationalError:
        return set()
    finally:
        db.close()
    return {r[0] for r in rows}


@pytest.mark.timeout(120)
def test_sigkill_mid_batch_then_resume_reruns_only_unfinished(tmp_path: Path) -> None:
    """kill -9 a batch on sqlite mid-run; resume_workflow runs only the files without
    a recorded completion and keeps the recorded ones."""
    data = tmp_path / "data"
    for i in range(10):
        write(data / f"f{i:02}.csv", f"{i}\n")
    side = tmp_path / "side"
    script = write(tmp_path / "crash.py", f"SIDE = {str(side)!r}\n{CRASH_SCRIPT}")
    db_path = tmp_path / "store.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.batch_crash_child", str(db_path), str(script), str(data)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    batch_id = child.stdout.readline().strip()
    assert batch_id.startswith("batch-")
    ids = task_ids([str(data / f"f{i:02}.csv") for i in range(10)])
    deadline = time.monotonic() + 60
    # Files 0-3 finish; then files 4 and 5 start and wait: kill it there.
    while len(_completed(db_path, batch_id)) < 4 or len(side.read_text().split()) < 6:
        assert time.monotonic() < deadline, "the batch did not get going"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    recorded = _completed(db_path, batch_id)
    assert recorded == set(ids[:4])
    (data / "release").touch()

    async def resume() -> dict[str, Any]:
        async with GleitzeitClient(persistence="sqlite", db_path=db_path) as c:
            return await c.resume_workflow(batch_id)

    results = trio.run(resume)
    assert list(results) == ids
    assert [r["result"] for r in results.values()] == [f"F{i:02}.CSV" for i in range(10)]
    runs = side.read_text().split()
    for i in range(10):
        name = f"f{i:02}.csv"
        assert runs.count(name) == (2 if i in (4, 5) else 1), (name, runs)


async def test_the_earlier_systems_batch_document_runs(tmp_path: Path) -> None:
    """The earlier gleitzeit's python batch example runs unchanged over its CSV files."""
    import shutil

    legacy = Path(__file__).parent / "fixtures" / "legacy"
    shutil.copy(legacy / "batch_python_workflow.json", tmp_path)
    shutil.copytree(legacy / "scripts", tmp_path / "scripts")
    write(tmp_path / "data/a.csv", "h\n1\n2\n")
    write(tmp_path / "data/b.csv", "h\n1\n")
    async with client() as c:
        results = await c.run_workflow(str(tmp_path / "batch_python_workflow.json"))
    rows = {Path(r["result"]["file"]).name: r["result"]["rows"] for r in results.values()}
    assert rows == {"a.csv": 2, "b.csv": 1}
    assert list(results) == ["file-data-a-csv", "file-data-b-csv"]


async def test_steps_after_the_files_use_the_batch_step(tmp_path: Path, ollama: FakeOllama) -> None:
    """A batch document's own `tasks` run after every file, reading `${batch.result}`."""
    a, b = write(tmp_path / "docs/a.txt", "A"), write(tmp_path / "docs/b.txt", "B")
    doc = {
        "name": "summaries and a report",
        "type": "batch",
        "batch": {"directory": str(tmp_path / "docs")},
        "template": {"method": "llm/chat", "prompt": "Summarise"},
        "tasks": [
            {
                "name": "count",
                "method": "python/execute",
                "params": {
                    "code": "result = sorted(args['all'])",
                    "args": {"all": "${batch.result}"},
                },
            },
            {"name": "report", "method": "llm/chat", "params": {"prompt": "Join: ${batch.result}"}},
        ],
    }
    async with client(ollama.url, isolation="inline") as c:
        results = await c.run_workflow(doc)
    assert results["count"]["result"] == [str(a), str(b)]
    assert results["batch"]["result"][str(a)] == expected_reply("Summarise", a)
    gathered = json.dumps(results["batch"]["result"], ensure_ascii=False)
    assert results["report"]["response"] == FakeOllama.reply_for(MODEL, f"Join: {gathered}")
    assert list(results)[-3:] == ["batch", "count", "report"]


async def test_steps_after_a_failed_file_are_skipped(tmp_path: Path) -> None:
    """A failed file fails its entry; the steps after the files are skipped, and
    run_workflow raises that file's error with the other results."""
    write(tmp_path / "docs/a.txt", "ok")
    (tmp_path / "docs/b.txt").symlink_to(tmp_path / "nowhere")
    doc = {
        "name": "with a bad file",
        "batch": {"directory": str(tmp_path / "docs")},
        "template": {"method": "python/execute", "code": "result = open(file_path).close()"},
        "tasks": [
            {
                "name": "after",
                "method": "python/execute",
                "params": {"code": "result = 1"},
                "dependencies": ["batch"],
            }
        ],
    }
    async with client(isolation="inline") as c:
        with pytest.raises(TaskError) as info:
            await c.run_workflow(doc)
        status = await c.get_workflow_status(info.value.data["workflow_id"])
    assert info.value.data["task_id"] == task_ids([str(tmp_path / "docs/b.txt")])[0]
    assert status is not None
    statuses = {t.id: str(t.status) for t in status.tasks}
    assert statuses["batch"] == statuses["after"] == "skipped"


def test_steps_of_a_batch_document_are_validated_when_loaded() -> None:
    """Steps may name `batch`; any other unknown task is a problem found at load time."""
    from gleitzeit import load_workflow

    base = {
        "name": "b",
        "batch": {"directory": "docs"},
        "template": {"method": "llm/chat", "prompt": "x"},
    }
    ok = {
        **base,
        "tasks": [{"name": "r", "method": "llm/chat", "params": {"prompt": "${batch.result}"}}],
    }
    assert [t.id for t in load_workflow(ok).tasks] == ["r"]
    bad = {
        **base,
        "tasks": [{"name": "r", "method": "llm/chat", "params": {"prompt": "${nope.x}"}}],
    }
    with pytest.raises(WorkflowError) as info:
        load_workflow(bad)
    check_error(info.value, ErrorCode.WORKFLOW_VALIDATION_FAILED, "nope")


async def test_a_dollar_brace_in_a_file_name_stays_literal(tmp_path: Path) -> None:
    """A file called `${x}.txt` is a file, not a reference."""
    path = write(tmp_path / "${x}.txt", "odd")
    async with client(isolation="inline") as c:
        result = await c.batch_python(
            str(write(tmp_path / "s.py", "result = file_path")), [str(path)]
        )
    assert result.results[str(path)]["content"] == str(path)


async def test_a_batch_on_redis_is_stored_per_file(
    tmp_path: Path, ollama: FakeOllama, redis_url: str
) -> None:
    """On the redis store a batch is an ordinary shared workflow: another client
    sees it completed, file by file."""
    paths = [write(tmp_path / f"{n}.txt", n) for n in ("a", "b", "c")]
    async with client(ollama.url, persistence="redis", redis_url=redis_url) as c:
        result = await c.batch_process(directory=str(tmp_path), max_concurrent=2)
    assert result.successful == 3
    async with client(ollama.url, persistence="redis", redis_url=redis_url) as other:
        status = await other.get_workflow_status(result.batch_id)
        first = await other.get_task_result(result.batch_id, task_ids([str(paths[0])])[0])
    assert status is not None
    assert str(status.status) == "completed"
    assert status.completed_tasks == 3
    assert first is not None
    assert first["response"] == expected_reply("Analyze this file", paths[0])
