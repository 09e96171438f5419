"""Work sharing on one local redis-server: tasks/s with 1, 2 and 4 processes.

    python benchmarks/redis_share.py            # 10,000 independent tasks, 1,000-task chain
    python benchmarks/redis_share.py --quick    # 2,000 and 200

"N processes" counts the client that submits the run and waits for it (it
executes tasks too) plus N - 1 ``gleitzeit worker`` processes; time runs
from the ``run_workflow`` call to its return. Tasks are inline no-ops
(``result = 1``) or, with ``--isolation process``, process-isolated ones.
The same documents on the memory store in one process come first, as the
floor. Prints one line per case; asserts nothing.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from typing import Any

import anyio

from gleitzeit import GleitzeitClient
from gleitzeit.testing import RedisServer


def independent(n: int, isolation: str) -> dict[str, Any]:
    """``n`` tasks without dependencies."""
    return {
        "name": f"independent-{n}",
        "tasks": [
            {
                "name": f"t{i}",
                "method": "python/execute",
                "isolation": isolation,
                "params": {"code": "result = 1"},
            }
            for i in range(n)
        ],
    }


def chain(n: int, isolation: str) -> dict[str, Any]:
    """``n`` tasks, each depending on the one before."""
    return {
        "name": f"chain-{n}",
        "tasks": [
            {
                "name": f"t{i}",
                "method": "python/execute",
                "isolation": isolation,
                "params": {"code": "result = 1"},
                "dependencies": [f"t{i - 1}"] if i else [],
            }
            for i in range(n)
        ],
    }


def start_worker(url: str) -> subprocess.Popen[bytes]:
    """One ``gleitzeit worker``, returned once it serves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gleitzeit", "--persistence", "redis", "--redis-url", url, "worker"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    proc.stderr.readline()
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait."""
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)


async def timed(
    url: str, doc: dict[str, Any], max_concurrent: int, persistence: str = "redis"
) -> float:
    """Seconds from run_workflow's call to its return."""
    async with GleitzeitClient(
        persistence=persistence, redis_url=url, max_concurrent=max_concurrent
    ) as client:
        start = time.perf_counter()
        await client.run_workflow(doc)
        return time.perf_counter() - start


def main() -> None:
    """Run every case and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--isolation", default="inline", choices=["inline", "process"])
    parser.add_argument("--max-concurrent", type=int, default=64)
    args = parser.parse_args()
    n_ind, n_chain = (2000, 200) if args.quick else (10_000, 1000)
    with RedisServer() as server:
        # The same documents on the memory store in one process: the floor.
        seconds = anyio.run(
            timed, server.url, independent(n_ind, args.isolation), args.max_concurrent, "memory"
        )
        per_chain = anyio.run(timed, server.url, chain(n_chain, args.isolation), 1, "memory")
        print(
            f"memory store, 1 process, {args.isolation}: {n_ind} independent tasks "
            f"{n_ind / seconds:,.0f} tasks/s; {n_chain}-task chain "
            f"{per_chain / n_chain * 1000:.2f} ms/task"
        )
        base: float | None = None
        for procs in [int(p) for p in args.processes.split(",")]:
            workers = [start_worker(server.url) for _ in range(procs - 1)]
            try:
                seconds = anyio.run(
                    timed, server.url, independent(n_ind, args.isolation), args.max_concurrent
                )
                rate = n_ind / seconds
                base = base or rate
                per_chain = anyio.run(timed, server.url, chain(n_chain, args.isolation), 1)
            finally:
                for w in workers:
                    stop_worker(w)
            print(
                f"{procs} process(es), {args.isolation}: {n_ind} independent tasks "
                f"{rate:,.0f} tasks/s ({1e6 / rate:.0f} us/task, x{rate / base:.2f} of 1 "
                f"process); {n_chain}-task chain {per_chain / n_chain * 1000:.2f} ms/task"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
