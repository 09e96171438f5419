"""Crash safety: SIGKILL a running workflow anywhere, resume it, lose nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gleitzeit import GleitzeitClient, TaskError
from gleitzeit._stores._state import StoredRun, apply_event
from gleitzeit._stores.journal import JournalStore, read_journal

from .crash_child import WORKFLOW_ID, crash_workflow

ROOT = Path(__file__).parents[1]


def _uninterrupted_results(side_file: Path) -> dict[str, object]:
    import trio

    async def main() -> dict[str, dict[str, object]]:
        async with GleitzeitClient(persistence="memory", isolation="inline") as c:
            return await c.run_workflow(crash_workflow(str(side_file)))

    return {k: v["result"] for k, v in trio.run(main).items()}


EXPECTED: dict[str, object] = {}


def _completed_ids(persistence: str, db_path: Path) -> set[str]:
    """What the store says completed, read without a client (as after a crash)."""
    if persistence == "journal":
        events, _, _ = read_journal(db_path)
        runs: dict[str, StoredRun] = {}
        for event in events:
            apply_event(runs, event)
        run = runs.get(WORKFLOW_ID)
        return set() if run is None else set(run.results)
    import sqlite3

    if not db_path.exists():
        return set()
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute(
            "SELECT task_id FROM tasks WHERE workflow_id = ? AND status = 'completed'",
            (WORKFLOW_ID,),
        ).fetchall()
    except sqlite3.OperationalError:  # killed before the schema existed
        return set()
    finally:
        db.close()
    return {r[0] for r in rows}


@settings(max_examples=16, deadline=None)
@given(persistence=st.sampled_from(["journal", "sqlite"]), delay=st.floats(0.0, 0.4))
@pytest.mark.timeout(300)
def test_sigkill_then_resume_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory, persistence: str, delay: float
) -> None:
    """Kill -9 at a random point; a new client resumes; every recorded completion ran
    its side effect exactly once; the results equal an uninterrupted run's."""
    tmp = tmp_path_factory.mktemp("crash")
    db_path, side = tmp / "store", tmp / "side"
    if not EXPECTED:
        EXPECTED.update(_uninterrupted_results(tmp / "reference-side"))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", persistence, str(db_path), str(side)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "running"
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    recorded = _completed_ids(persistence, db_path)

    import trio

    async def resume() -> dict[str, dict[str, object]]:
        async with GleitzeitClient(
            persistence=persistence, db_path=db_path, isolation="inline"
        ) as c:
            status = await c.get_workflow_status(WORKFLOW_ID)
            assert status is not None
            assert status.completed_tasks == len(recorded)
            return await c.resume_workflow(WORKFLOW_ID)

    results = {k: v["result"] for k, v in trio.run(resume).items()}
    assert results == EXPECTED
    runs = side.read_text().split()
    for task_id in recorded:
        assert runs.count(task_id) == 1, f"{task_id} was recorded yet ran {runs.count(task_id)}x"
    assert set(runs) == set(EXPECTED)


def _journal_of_a_run(tmp: Path) -> bytes:
    import trio

    path = tmp / "j.jsonl"

    async def main() -> None:
        async with GleitzeitClient(
            persistence="journal", db_path=path, isolation="inline", max_concurrent=3
        ) as c:
            doc = crash_workflow(str(tmp / "side"), n=12)
            doc["tasks"][5]["params"]["code"] = "raise ValueError('five')"
            with contextlib.suppress(TaskError):
                await c.run_workflow(doc)

    trio.run(main)
    return path.read_bytes()


@settings(max_examples=60, deadline=None)
@given(cut=st.floats(0.0, 1.0))
def test_truncated_journal_replays_to_a_prefix(
    tmp_path_factory: pytest.TempPathFactory, cut: float
) -> None:
    """A journal cut at any byte replays to exactly the state after its whole lines."""
    tmp = tmp_path_factory.mktemp("replay")
    data = _journal_of_a_run(tmp)
    k = int(len(data) * cut)
    path = tmp / "cut.jsonl"
    path.write_bytes(data[:k])

    import trio

    async def replay() -> list[StoredRun]:
        store = JournalStore(path)
        await store.open()
        try:
            return await store.list_runs(10)
        finally:
            await store.aclose()

    replayed = trio.run(replay)
    whole = data[: data.rfind(b"\n", 0, k) + 1] if k else b""
    from gleitzeit._serde import event_from_record

    expected: dict[str, StoredRun] = {}
    for line in whole.splitlines():
        apply_event(expected, event_from_record(json.loads(line)))
    assert [(r.workflow.id, r.status, r.task_status, r.results, r.errors) for r in replayed] == [
        (r.workflow.id, r.status, r.task_status, r.results, r.errors) for r in expected.values()
    ]
    assert path.read_bytes() == whole, "the torn tail is cut off"
