"""Instructions per task under callgrind: a figure the host's noise cannot move.

    python benchmarks/icount.py [memory|journal|sqlite] [--small 2000 --large 6000]

Runs a random layered workflow of inline python tasks twice under
``valgrind --tool=callgrind`` (sizes ``--small`` and ``--large``) and prints
the difference in instructions divided by the difference in tasks, which
cancels interpreter start-up and imports. Building the input dict is
included (~27,000 instructions per task); it is measured separately with
``--doc-only``. Needs Debian's ``valgrind``; takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

CHILD = """
import sys
sys.path.insert(0, {bench!r})
from dags import layered, workflow
import trio
from gleitzeit import GleitzeitClient, load_workflow
n, persistence, doc_only = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
doc = workflow(layered(n))
async def main():
    async with GleitzeitClient(persistence=persistence, db_path=sys.argv[4],
                               isolation="inline", max_concurrent=64) as client:
        await client.run_workflow(load_workflow(doc))
if not doc_only:
    trio.run(main)
"""


def _instructions(n: int, persistence: str, doc_only: bool) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "child.py")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(CHILD.format(bench=here))
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                script,
                str(n),
                persistence,
                "1" if doc_only else "0",
                os.path.join(tmp, "store"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise SystemExit(f"callgrind printed no total:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def main() -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "persistence", nargs="?", default="memory", choices=["memory", "journal", "sqlite"]
    )
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=6000)
    parser.add_argument("--doc-only", action="store_true", help="only build the input dict")
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    small = _instructions(options.small, options.persistence, options.doc_only)
    large = _instructions(options.large, options.persistence, options.doc_only)
    per_task = (large - small) / (options.large - options.small)
    what = "building the input dict" if options.doc_only else options.persistence
    print(f"{what}: {per_task:,.0f} instructions per task")
    return 0


if __name__ == "__main__":
    sys.exit(main())
