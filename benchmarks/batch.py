"""A large batch: N small text files through batch_process against the fake Ollama.

Usage: python benchmarks/batch.py [N] [LATENCY] [MAX_CONCURRENT]
(defaults: 10,000 files, 5 ms server latency per request, 16 in flight)

Prints files per second, the ideal rate for that latency and bound
(``max_concurrent / latency``) and the ratio of the two, the peak number of
open file descriptors of this process (sampled in a thread), and the peak
memory growth per file (peak RSS over the baseline taken after the files were
written and the server started). The store is ``memory``; the fake server runs
in this process's threads, so its own cost is counted too.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

from gleitzeit import GleitzeitClient
from gleitzeit.testing import FakeOllama


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    latency = float(sys.argv[2]) if len(sys.argv) > 2 else 0.005
    bound = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        for i in range(n):
            sub = folder / f"d{i % 100:02}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"f{i:05}.txt").write_text(f"file number {i}\n" * 4)
        with FakeOllama(latency=latency, parallel=bound) as ollama:
            peak_fds = _open_fds()
            stop = threading.Event()

            def sample() -> None:
                nonlocal peak_fds
                while not stop.wait(0.01):
                    peak_fds = max(peak_fds, _open_fds())

            sampler = threading.Thread(target=sample, daemon=True)
            base_fds = _open_fds()
            base_rss = _rss()
            sampler.start()

            async def run() -> tuple[float, int]:
                async with GleitzeitClient(persistence="memory", ollama_url=ollama.url) as c:
                    start = time.perf_counter()
                    result = await c.batch_process(
                        directory=str(folder), pattern="**/*.txt", max_concurrent=bound
                    )
                    return time.perf_counter() - start, result.successful

            seconds, ok = trio.run(run)
            stop.set()
            sampler.join()
            server_peak = ollama.max_in_flight
    grown = max(0, _rss() - base_rss)
    rate = n / seconds
    ideal = bound / latency if latency > 0 else float("inf")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"files {n:,}, server latency {latency * 1000:g} ms, max_concurrent {bound}")
    print(f"successful {ok:,} in {seconds:.2f} s: {rate:,.0f} files/s")
    print(f"ideal {ideal:,.0f} files/s (max_concurrent / latency): ratio {rate / ideal:.2f}")
    print(f"peak requests in flight at the server: {server_peak}")
    print(f"open fds: {base_fds} before, peak {peak_fds} (+{peak_fds - base_fds})")
    print(f"peak memory growth: {grown / 1e6:.1f} MB, {grown / n:,.0f} B per file")
    return 0 if ok == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
