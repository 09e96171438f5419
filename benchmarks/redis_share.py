"""Work sharing on one local redis-server: tasks/s with 1, 2 and 4 processes.

    python benchmarks/redis_share.py                # inline and process-isolated
    python benchmarks/redis_share.py --quick        # smaller runs, one of each
    python benchmarks/redis_share.py --isolation inline --processes 1,2

"N processes" counts the client that submits the run and waits for it (it
executes tasks too) plus N - 1 ``gleitzeit worker --max-concurrent M``
processes; time runs from the ``run_workflow`` call to its return, so it
includes recording the workflow and starting the run, which only the
submitting client can do. Independent tasks are timed twice: given as a
document (a dict, so the time includes loading and validating it, ~5 us
per task whatever the process count) and as a workflow loaded before the
call (``run_workflow(load_workflow(doc))``). Tasks are no-ops (``result = 1``),
inline or process-isolated: 10,000 independent tasks and a 1,000-task chain
(``--quick``: 2,000 and 200 inline, 1,000 and 100 process-isolated).

Each figure is the best of ``--repeat`` runs (default 3), after a warm-up
run that lets every worker join and grow its worker pool. Beside each
independent figure: the CPU seconds the client, the workers and
redis-server used in that run (from /proc), against
the wall time times the cores — on a 2-core machine the processes and Redis
share the same two cores. The memory store in one process comes first, as
the floor. Prints one line per case; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time
from typing import Any

import anyio
import redis

from gleitzeit import GleitzeitClient, load_workflow
from gleitzeit.testing import RedisServer

SIZES = {  # (independent, chain), full and --quick
    "inline": ((10_000, 1000), (2000, 200)),
    "process": ((10_000, 1000), (1000, 100)),
}


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_worker(url: str, max_concurrent: int) -> subprocess.Popen[bytes]:
    """One ``gleitzeit worker``, returned once it serves."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gleitzeit",
            "--persistence",
            "redis",
            "--redis-url",
            url,
            "worker",
            "--max-concurrent",
            str(max_concurrent),
        ],
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


def settle(pids: list[int], timeout: float = 30.0) -> None:
    """Wait until the workers are idle (done joining the warm-up, pools grown)."""
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(0.2)
        if sum(cpu_seconds(p) for p in pids) - before < 0.02:
            return


@dataclasses.dataclass
class Timing:
    """One timed run: wall seconds, CPU seconds per process, seconds before it went live."""

    seconds: float
    cpu: list[float]
    serial: float


class Case:
    """One process count: a client (and its workers) timing documents."""

    def __init__(self, client: GleitzeitClient, pids: list[int]) -> None:
        self.client = client
        self.pids = pids  # this process, the workers, redis-server

    async def best(self, doc: dict[str, Any], repeat: int, *, loaded: bool = False) -> Timing:
        """Fastest of ``repeat`` runs (``loaded``: of the workflow loaded before the call)."""
        best: Timing | None = None
        for _ in range(repeat):
            what: Any = load_workflow(doc) if loaded else doc
            before = [cpu_seconds(p) for p in self.pids]
            start = time.time()
            await self.client.run_workflow(what)
            seconds = time.time() - start
            cpu = [cpu_seconds(p) - b for p, b in zip(self.pids, before, strict=True)]
            if best is None or seconds < best.seconds:
                best = Timing(seconds, cpu, self.started(start))
        assert best is not None
        return best

    def started(self, start: float) -> float:
        """Seconds from the call to the run going live (loading, recording, starting it)."""
        if self.client.persistence != "redis":
            return 0.0
        url = self.client._store.url  # type: ignore[attr-defined]
        with redis.Redis.from_url(url) as conn:
            (wid,) = conn.zrevrange("gleitzeit:runs", 0, 0)
            at = conn.hget(f"gleitzeit:wf:{wid.decode()}", "started_at")
        assert at is not None
        return float(at) - start


async def measure(
    url: str,
    persistence: str,
    pids: list[int],
    isolation: str,
    sizes: tuple[int, int],
    max_concurrent: int,
    repeat: int,
) -> tuple[Timing, Timing, Timing]:
    """The independent tasks' timings (document, loaded workflow) and the chain's."""
    n_ind, n_chain = sizes
    async with GleitzeitClient(
        persistence=persistence, redis_url=url, max_concurrent=max_concurrent
    ) as client:
        case = Case(client, [os.getpid(), *pids])
        await client.run_workflow(independent(4 * max_concurrent, isolation))  # warm-up
        settle(pids[:-1])
        ind = await case.best(independent(n_ind, isolation), repeat)
        loaded = await case.best(independent(n_ind, isolation), repeat, loaded=True)
        chained = await case.best(chain(n_chain, isolation), repeat)
    return ind, loaded, chained


def main() -> None:
    """Run every case and print its figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, one of each")
    parser.add_argument("--processes", default="1,2,4", help="process counts (default 1,2,4)")
    parser.add_argument("--isolation", default="both", choices=["inline", "process", "both"])
    parser.add_argument("--max-concurrent", type=int, default=64, help="per process (64)")
    parser.add_argument("--repeat", type=int, default=3, help="inline runs per figure (3)")
    args = parser.parse_args()
    isolations = ["inline", "process"] if args.isolation == "both" else [args.isolation]
    mc = args.max_concurrent
    cores = os.cpu_count() or 1
    print(f"{cores} cores; load average {os.getloadavg()[0]:.2f} at the start")
    doc = independent(SIZES["inline"][args.quick][0], "inline")
    start = time.perf_counter()
    load_workflow(doc)
    print(
        f"loading the {len(doc['tasks']):,}-task document alone (done by the submitting "
        f"client in every run): {(time.perf_counter() - start) * 1000:.0f} ms"
    )
    with RedisServer() as server:
        assert server.pid is not None
        for isolation in isolations:
            sizes = SIZES[isolation][args.quick]
            n_ind, n_chain = sizes
            repeat = 1 if args.quick else args.repeat
            floor, _, floor_chain = anyio.run(
                measure, server.url, "memory", [], isolation, sizes, mc, repeat
            )
            print(
                f"{isolation:7} memory store, 1 process: {n_ind:,} independent "
                f"{n_ind / floor.seconds:,.0f} tasks/s "
                f"({floor.seconds / n_ind * 1e6:.0f} us/task); "
                f"{n_chain:,}-task chain {floor_chain.seconds / n_chain * 1000:.2f} ms/task"
            )
            sys.stdout.flush()
            bases: tuple[Timing, Timing] | None = None
            for procs in [int(p) for p in args.processes.split(",")]:
                workers = [start_worker(server.url, mc) for _ in range(procs - 1)]
                try:
                    ind, loaded, chained = anyio.run(
                        measure,
                        server.url,
                        "redis",
                        [*(w.pid for w in workers), server.pid],
                        isolation,
                        sizes,
                        mc,
                        repeat,
                    )
                finally:
                    for w in workers:
                        stop_worker(w)
                bases = bases or (ind, loaded)
                name = f"{isolation:7} redis, {procs} process{'es' if procs > 1 else ''}:"
                print(
                    f"{name} {n_ind:,} independent, document: "
                    f"{figures(n_ind, ind, bases[0], floor, procs, cores)}"
                )
                print(
                    f"{name} {n_ind:,} independent, loaded workflow: "
                    f"{figures(n_ind, loaded, bases[1], None, procs, cores)}"
                )
                print(
                    f"{name} {n_chain:,}-task chain {chained.seconds / n_chain * 1000:.2f} "
                    f"ms/task ({n_chain / chained.seconds:,.0f} tasks/s)"
                )
                sys.stdout.flush()


def figures(n: int, ind: Timing, base: Timing, floor: Timing | None, procs: int, cores: int) -> str:
    """The figures of one timing of independent tasks."""
    rate = n / ind.seconds
    cpu = ind.cpu
    split = ", ".join(
        [f"client {cpu[0]:.2f}"]
        + ([f"workers {sum(cpu[1:-1]):.2f}"] if procs > 1 else [])
        + [f"redis {cpu[-1]:.2f}"]
    )
    over = ""
    if floor is not None:
        over = f"{(ind.seconds - floor.seconds) / n * 1e6:+.0f} over the floor, "
    live = ind.seconds - ind.serial
    live_ratio = (base.seconds - base.serial) / live
    return (
        f"{rate:,.0f} tasks/s ({1e6 / rate:.0f} us/task, {over}"
        f"x{base.seconds / ind.seconds:.2f} of 1 process; {ind.serial * 1000:.0f} ms before "
        f"the run went live, then {live * 1000:.0f} ms, x{live_ratio:.2f}; "
        f"CPU s {split} of {ind.seconds:.2f} s x {cores} cores)"
    )


if __name__ == "__main__":
    main()
