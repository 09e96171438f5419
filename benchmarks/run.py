"""gleitzeit benchmarks on generated DAGs. Prints figures; asserts nothing.

    python benchmarks/run.py --quick     # N <= 10,000, under a minute (CI runs this)
    python benchmarks/run.py             # full mode, N up to 1,000,000

Each case runs in a fresh process and reports total seconds, µs per task,
peak RSS growth per task (B/task; the input document is built before the
baseline, so it is not counted) and the same minus the results' own size
(B/task*), and its ratio to the ``graphlib`` walk of
the same DAG (the floor) and, when dask is installed, to dask's synchronous
scheduler. Store cases also report records written per second.

Cases:
  graphlib        a bare TopologicalSorter walk (the floor)
  dask            dask's synchronous scheduler (if installed; N <= 100,000)
  inline-memory   inline python tasks, memory store: the engine's own cost
  inline-journal  the same on the journal store
  inline-sqlite   the same on the sqlite store
  process         process-isolated python tasks (warm worker pool)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dags import SHAPES, workflow  # noqa: E402

QUICK = [(shape, 1000) for shape in SHAPES] + [("layered", 10_000)]
FULL = [(shape, n) for shape in SHAPES for n in (1000, 10_000, 100_000)] + [("layered", 1_000_000)]
CASES = ["graphlib", "dask", "inline-memory", "inline-journal", "inline-sqlite", "process"]
PROCESS_MAX = 10_000
#: dask's synchronous scheduler needs ~17 GiB for 100,000 layered nodes; 1,000,000
#: would not fit in this machine's memory.
DASK_MAX = 100_000


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _graphlib(deps: list[list[int]]) -> dict[str, Any]:
    from graphlib import TopologicalSorter

    start = time.perf_counter()
    sorter = TopologicalSorter(dict(enumerate(deps)))
    sorter.prepare()
    while sorter.is_active():
        for node in sorter.get_ready():
            sorter.done(node)
    return {"seconds": time.perf_counter() - start}


def _dask(deps: list[list[int]]) -> dict[str, Any]:
    import importlib

    dask: Any = importlib.import_module("dask")  # optional: not a dependency

    def task(*_: Any) -> int:
        return 1

    graph = {f"t{i}": (task, *[f"t{d}" for d in needs]) for i, needs in enumerate(deps)}
    start = time.perf_counter()
    dask.get(graph, list(graph))
    return {"seconds": time.perf_counter() - start}


def _deep_size(value: Any) -> int:
    """Bytes held by a JSON-like value (containers and their contents)."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(_deep_size(k) + _deep_size(v) for k, v in value.items())
    elif isinstance(value, list):
        size += sum(_deep_size(v) for v in value)
    return size


def _gleitzeit(
    doc: dict[str, Any], n: int, persistence: str, isolation: Literal["process", "inline"]
) -> dict[str, Any]:
    import trio

    from gleitzeit import GleitzeitClient, load_workflow

    tmp = tempfile.mkdtemp(prefix="gleitzeit-bench-")
    db_path = os.path.join(tmp, "store")
    counted = {"records": 0}

    sample: list[Any] = []

    async def main() -> float:
        async with GleitzeitClient(
            persistence=persistence, db_path=db_path, isolation=isolation, max_concurrent=64
        ) as client:
            store = client._store
            record = store.record

            async def counting(events: Any) -> None:
                counted["records"] += len(events)
                await record(events)

            store.record = counting  # type: ignore[method-assign]
            record_step = getattr(store, "record_step", None)
            if record_step is not None:  # a step's completions: one record per task
                from gleitzeit._stores._state import count_events

                async def counting_steps(records: Any) -> None:
                    counted["records"] += count_events(records)
                    await record_step(records)

                store.record_step = counting_steps  # type: ignore[attr-defined]
            start = time.perf_counter()
            results = await client.run_workflow(load_workflow(doc))
            elapsed = time.perf_counter() - start
            assert len(results) == n
            sample.extend(list(results.values())[:1000])
            return elapsed

    seconds = trio.run(main)
    out: dict[str, Any] = {
        "seconds": seconds,
        "result_bytes": sum(map(_deep_size, sample)) / len(sample),
    }
    if persistence != "memory":
        out["records"] = counted["records"]
        out["records_per_s"] = counted["records"] / seconds
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        out["store_bytes"] = size
    return out


def run_one(case: str, shape: str, n: int) -> dict[str, Any]:
    """Run one case in this process and return its figures."""
    if case not in ("graphlib", "dask"):
        import trio  # noqa: F401  (imported before measuring memory)

        import gleitzeit._client  # noqa: F401
    deps = SHAPES[shape](n)
    doc = workflow(deps)  # the caller's document: not gleitzeit's memory
    base = _rss()
    if case == "graphlib":
        out = _graphlib(deps)
    elif case == "dask":
        out = _dask(deps)
    elif case == "process":
        out = _gleitzeit(doc, n, "memory", "process")
    else:
        out = _gleitzeit(doc, n, case.split("-", 1)[1], "inline")
    grown = max(0, _rss() - base)
    out.update(
        case=case,
        shape=shape,
        n=n,
        us_per_task=out["seconds"] / n * 1e6,
        rss_growth=grown,
        bytes_per_task=grown / n,
        beyond_results=grown / n - out.get("result_bytes", 0.0),
    )
    return out


def _spawn(case: str, shape: str, n: int) -> dict[str, Any] | None:
    proc = subprocess.run(
        [sys.executable, __file__, "--one", case, shape, str(n)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        print(f"  {case} {shape} {n}: FAILED ({tail[0]})", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _has_dask() -> bool:
    import importlib.util

    return importlib.util.find_spec("dask") is not None


def main() -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="gleitzeit benchmarks")
    parser.add_argument("--quick", action="store_true", help="N <= 10,000 (CI)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--max-n", type=int, default=None)
    parser.add_argument("--one", nargs=3, metavar=("CASE", "SHAPE", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print JSON lines, not a table")
    options = parser.parse_args()
    if options.one:
        case, shape, n = options.one
        print(json.dumps(run_one(case, shape, int(n))))
        return 0

    plan = QUICK if options.quick else FULL
    shapes = set(options.shapes.split(","))
    cases = [c for c in options.cases.split(",") if c != "dask" or _has_dask()]
    started = time.perf_counter()
    header = (
        f"{'shape':<12}{'N':>9}  {'case':<15}{'seconds':>9}{'µs/task':>10}"
        f"{'B/task':>9}{'B/task*':>9}{'x floor':>9}{'x dask':>8}{'records/s':>11}"
    )
    if not options.json:
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
            f"{'quick' if options.quick else 'full'} mode"
        )
        print(header)
    failures = 0
    for shape, n in plan:
        if shape not in shapes or (options.max_n and n > options.max_n):
            continue
        floor = dask_s = None
        for case in cases:
            if (case == "process" and n > PROCESS_MAX) or (case == "dask" and n > DASK_MAX):
                continue
            out = _spawn(case, shape, n)
            if out is None:
                failures += 1
                continue
            if case == "graphlib":
                floor = out["seconds"]
            if case == "dask":
                dask_s = out["seconds"]
            if options.json:
                print(json.dumps(out))
                continue
            ratio = f"{out['seconds'] / floor:.1f}" if floor else "-"
            vs_dask = f"{out['seconds'] / dask_s:.2f}" if dask_s else "-"
            rps = f"{out['records_per_s']:,.0f}" if "records_per_s" in out else "-"
            print(
                f"{shape:<12}{n:>9,}  {case:<15}{out['seconds']:>9.3f}"
                f"{out['us_per_task']:>10.1f}{out['bytes_per_task']:>9.0f}"
                f"{out['beyond_results']:>9.0f}{ratio:>9}"
                f"{vs_dask:>8}{rps:>11}",
                flush=True,
            )
    if not options.json:
        print(f"total {time.perf_counter() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
