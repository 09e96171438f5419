"""Tests of the public surface: __all__, module paths, and the core's purity."""

from __future__ import annotations

import ast
from pathlib import Path

import gleitzeit


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, every name resolves, and dir() offers exactly the public names."""
    assert gleitzeit.__all__ == sorted(gleitzeit.__all__)
    for name in gleitzeit.__all__:
        assert getattr(gleitzeit, name) is not None, name
    public = {n for n in dir(gleitzeit) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(gleitzeit, n)).__name__ == "module"}
    assert public - modules - {"annotations", "importlib", "TYPE_CHECKING", "Any"} == set(
        gleitzeit.__all__
    )


def test_contract_imports() -> None:
    """The import lines of CONTRACT.md §1 work."""
    from gleitzeit import (  # noqa: F401
        BatchResult,
        GleitzeitClient,
        SyncGleitzeitClient,
        Task,
        TaskStatus,
        Workflow,
        WorkflowStatus,
    )
    from gleitzeit.core.errors import (  # noqa: F401
        ErrorCode,
        GleitzeitError,
        PersistenceError,
        ProviderError,
        TaskError,
        WorkflowError,
    )


def test_public_classes_report_public_module() -> None:
    """Public classes show their public import path in reprs and tracebacks."""
    for name in gleitzeit.__all__:
        obj = getattr(gleitzeit, name)
        if isinstance(obj, type):
            assert obj.__module__ in ("gleitzeit", "gleitzeit.core.errors"), name


def test_core_imports_no_io_libraries() -> None:
    """gleitzeit.core imports nothing above it and no I/O or async library."""
    forbidden = {"anyio", "trio", "yaml", "httpx", "sqlite3", "redis", "asyncio", "gleitzeit"}
    core = Path(gleitzeit.__file__).parent / "core"
    for file in core.glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 1:
                    raise AssertionError(f"{file.name} imports from above core")
                names = [node.module or ""] if node.level == 0 else []
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{file.name} imports {name}"


def test_a_client_on_another_store_does_not_import_redis() -> None:
    """redis-py (~10 MB) is imported only when the redis store is used."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from gleitzeit import SyncGleitzeitClient\n"
        "with SyncGleitzeitClient(persistence='memory') as c:\n"
        "    c.execute_python(code='result = 1')\n"
        "print('redis' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False", out.stderr
