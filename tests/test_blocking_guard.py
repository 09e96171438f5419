"""The suite's blocking guard catches gleitzeit code that blocks an event loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from . import blocking_guard

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

_SOURCE = """
async def read_on_the_loop(path):
    with open(path) as f:
        return f.read()

async def read_in_a_thread(path):
    import anyio.to_thread
    return await anyio.to_thread.run_sync(read_plainly, path)

def read_plainly(path):
    with open(path) as f:
        return f.read()
"""


def _as_gleitzeit_code() -> dict[str, Any]:
    """Functions that look to the guard like a gleitzeit module's."""
    namespace: dict[str, Any] = {"__name__": "gleitzeit._pretend"}
    exec(compile(_SOURCE, "/nonexistent/gleitzeit/_pretend.py", "exec"), namespace)
    return namespace


async def test_blocking_in_a_gleitzeit_coroutine_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    code = _as_gleitzeit_code()
    with pytest.raises(blocking_guard.BlockingCallError) as info:
        await code["read_on_the_loop"](path)
    assert "gleitzeit._pretend.read_on_the_loop" in str(info.value)
    assert blocking_guard.violations  # the test would fail at teardown ...
    blocking_guard.violations.clear()  # ... had we not expected it here


async def test_the_same_work_in_a_thread_passes(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    code = _as_gleitzeit_code()
    assert await code["read_in_a_thread"](path) == "x"
    # A plain function of ours that a test calls itself is the test's business.
    assert code["read_plainly"](path) == "x"
    assert not blocking_guard.violations
