"""A store that runs out of room mid-run: the real cause, what fits is kept, a true live view.

sqlite is capped with ``PRAGMA max_page_count``, which makes sqlite report
``SQLITE_FULL`` exactly as on a full disk; the journal runs in a child process
whose file size limit (``RLIMIT_FSIZE``) makes the kernel refuse the write
with ``EFBIG`` the way a full disk refuses it with ``ENOSPC``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from gleitzeit import GleitzeitClient, WorkflowStatus
from gleitzeit._stores.journal import read_journal
from gleitzeit._stores.sqlite import SqliteStore
from gleitzeit.core.errors import ErrorCode, PersistenceError

if TYPE_CHECKING:
    from pathlib import Path

TASKS = 100
WORKFLOW: dict[str, Any] = {
    "name": "fills the disk",
    "tasks": [
        {"name": f"t{i}", "method": "python/execute", "params": {"code": "result = 'x' * 3000"}}
        for i in range(TASKS)
    ],
}


async def _stored_completed(persistence: str, path: Path, workflow_id: str) -> int:
    async with GleitzeitClient(persistence=persistence, db_path=path) as client:
        status = await client.get_workflow_status(workflow_id)
        assert status is not None
        return status.completed_tasks


@pytest.mark.anyio
async def test_sqlite_full_disk_names_the_cause_and_keeps_what_fits(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    async with GleitzeitClient(persistence="sqlite", db_path=path, isolation="inline") as client:
        store = client._store
        assert isinstance(store, SqliteStore)
        db = store._db
        assert db is not None

        def cap() -> None:  # room for the workflow and some of its results, not all
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count={pages + 40}")

        await store._writer_or_fail().call(cap)
        with pytest.raises(PersistenceError) as info:
            await client.run_workflow(WORKFLOW)
        (listed,) = await client.list_workflows()
        live = await client.get_workflow_status(listed.id)
    error = info.value
    message = str(error)
    assert error.code == ErrorCode.PERSISTENCE_WRITE_FAILED
    assert "disk is full" in message
    assert "SQLITE_FULL" in message
    assert "db_path" in message
    assert "rollback" not in message
    assert error.data["sqlite_error"] == "SQLITE_FULL"
    assert error.data["path"] == str(path)
    assert error.data["events"] == TASKS
    assert 0 < error.data["events_recorded"] < TASKS
    assert f"{error.data['events_recorded']} of the {TASKS} records were saved" in message

    # The live view agrees with what a new client reads back: what fits was kept.
    assert live is not None
    assert live.status is WorkflowStatus.FAILED
    stored = await _stored_completed("sqlite", path, listed.id)
    assert live.completed_tasks == stored == error.data["events_recorded"]

    # With room again, resuming finishes the run.
    async with GleitzeitClient(persistence="sqlite", db_path=path, isolation="inline") as client:
        results = await client.resume_workflow(listed.id)
    assert len(results) == TASKS


CHILD = """
import json, resource, signal, sys
import trio
from gleitzeit import GleitzeitClient
from gleitzeit.core.errors import PersistenceError

path, limit, workflow = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed


async def main() -> None:
    async with GleitzeitClient(persistence="journal", db_path=path, isolation="inline") as client:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        try:
            await client.run_workflow(workflow)
        except PersistenceError as exc:
            (listed,) = await client.list_workflows()
            live = await client.get_workflow_status(listed.id)
            print(json.dumps({
                "id": listed.id, "code": exc.code.name, "message": str(exc), "data": exc.data,
                "live": live.completed_tasks, "status": live.status.value,
            }))


trio.run(main)
"""


@pytest.mark.anyio
async def test_journal_full_disk_keeps_whole_records_and_a_true_live_view(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(60_000), json.dumps(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    assert out["code"] == "PERSISTENCE_WRITE_FAILED"
    assert "size limit" in out["message"]
    assert "db_path" in out["message"]
    assert out["data"]["errno"] == "EFBIG"
    assert out["data"]["path"] == str(path)
    assert 0 < out["data"]["events_recorded"] < out["data"]["events"]
    assert out["status"] == "failed"

    # No torn record was left behind, and the live view matched the file.
    _, good, torn = read_journal(path)
    assert not torn
    assert good == path.stat().st_size
    stored = await _stored_completed("journal", path, out["id"])
    assert 0 < stored < TASKS
    assert out["live"] == stored
