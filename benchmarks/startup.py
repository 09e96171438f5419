"""Start-up cost: how long a fresh interpreter takes to import gleitzeit.

    python benchmarks/startup.py            # 30 runs per case
    python benchmarks/startup.py --quick    # 5 runs per case

Each case is a fresh ``python -c`` process; the figure is the fastest and the
median wall time of N runs, beside ``python -c pass`` (the interpreter's own
start-up) measured in the same loop, and their ratio. Bytecode is cached in a
temporary ``PYTHONPYCACHEPREFIX`` (warmed by one untimed run per case), as a
normal install would have it: without a bytecode cache every gleitzeit module
is compiled from source at each start, which is not what users see.

The last case also runs a one-task workflow (an inline python task on the
memory store under ``asyncio.run``): the cost of a first ``run_workflow``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

FIRST_RUN = """
import asyncio
from gleitzeit import GleitzeitClient
async def main():
    async with GleitzeitClient(persistence="memory") as client:
        doc = {"name": "one", "tasks": [{"id": "a", "method": "python/execute",
               "parameters": {"code": "result = 1"}, "isolation": "inline"}]}
        results = await client.run_workflow(doc)
        assert results["a"]["result"] == 1, results
asyncio.run(main())
"""

CASES = {
    "python -c pass": "pass",
    "import gleitzeit": "import gleitzeit",
    "from gleitzeit import GleitzeitClient": "from gleitzeit import GleitzeitClient",
    "first run_workflow (import + 1 task)": FIRST_RUN,
}


def _time(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 runs per case")
    args = parser.parse_args()
    runs = 5 if args.quick else 30
    with tempfile.TemporaryDirectory(prefix="gleitzeit-pycache-") as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for code in CASES.values():  # warm the bytecode cache
            _time(code, env)
        times: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(runs):  # interleaved, so load changes hit every case alike
            for name, code in CASES.items():
                times[name].append(_time(code, env))
    base = min(times["python -c pass"])
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {runs} runs per case")
    print(f"{'case':40} {'fastest ms':>10} {'median ms':>10} {'x pass':>7} {'+ms':>7}")
    for name, values in times.items():
        fastest = min(values)
        print(
            f"{name:40} {fastest * 1000:10.1f} {statistics.median(values) * 1000:10.1f} "
            f"{fastest / base:7.2f} {(fastest - base) * 1000:7.1f}"
        )


if __name__ == "__main__":
    main()
