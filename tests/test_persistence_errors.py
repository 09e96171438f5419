"""Clear errors for stores a user cannot open as asked."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from gleitzeit import GleitzeitClient, SyncGleitzeitClient
from gleitzeit.core.errors import ConfigurationError, PersistenceError

if TYPE_CHECKING:
    from pathlib import Path


def test_a_journal_in_use_names_the_process_that_holds_it(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from gleitzeit import SyncGleitzeitClient\n"
            f"with SyncGleitzeitClient(persistence='journal', db_path={str(journal)!r}):\n"
            "    print('open', flush=True)\n"
            "    sys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"  # waits until it holds the lock
        with (
            pytest.raises(PersistenceError) as info,
            SyncGleitzeitClient(persistence="journal", db_path=journal),
        ):
            pass
        message = str(info.value)
        assert f"process {holder.pid}" in message
        assert "persistence='sqlite'" in message
    finally:
        assert holder.stdin is not None
        assert holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
    with SyncGleitzeitClient(persistence="journal", db_path=journal):  # free again
        pass


def test_unknown_persistence_lists_every_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLEITZEIT_PERSISTENCE_BACKEND", raising=False)
    with pytest.raises(ConfigurationError) as info:
        GleitzeitClient(persistence="postgres")
    message = str(info.value)
    for name in ("memory", "sqlite", "journal", "redis"):
        assert name in message
