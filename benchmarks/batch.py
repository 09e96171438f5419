"""A large batch: N small text files through batch_process against the fake Ollama.

Usage: python benchmarks/batch.py [N] [LATENCY] [MAX_CONCURRENT]
(defaults: 10,000 files, 5 ms server latency per request, 16 in flight)

Prints files per second, the same for a hand-written workflow of the same
requests (so the batch's own overhead shows as a ratio), the ideal rate for that latency and bound
(``max_concurrent / latency``) and the ratio of the two, the peak number of
open file descriptors of this process (sampled in a thread), and the peak
memory growth per file (peak RSS over the baseline taken after the files were
written). The store is ``memory``. The fake server runs in a process of its
own, so its threads do not compete with the client for this process's GIL
(the machine's cores are still shared).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

from gleitzeit import GleitzeitClient

_SERVER = """
import sys
from gleitzeit.testing import FakeOllama
with FakeOllama(latency=float(sys.argv[1]), parallel=int(sys.argv[2])) as server:
    print(server.url, flush=True)
    sys.stdin.readline()
    print(server.max_in_flight, flush=True)
"""


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
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(latency), str(bound)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdin is not None
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        try:
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
                async with GleitzeitClient(persistence="memory", ollama_url=url) as c:
                    start = time.perf_counter()
                    result = await c.batch_process(
                        directory=str(folder), pattern="**/*.txt", max_concurrent=bound
                    )
                    return time.perf_counter() - start, result.successful

            seconds, ok = trio.run(run)
            stop.set()
            sampler.join()
            grown = max(0, _rss() - base_rss)

            async def plain() -> float:
                # The same requests as a hand-written workflow: the batch's own overhead.
                paths = sorted(str(p) for p in folder.glob("*/*.txt"))
                doc = {
                    "name": "plain",
                    "max_parallel_tasks": bound,
                    "tasks": [
                        {
                            "id": f"t{i}",
                            "method": "llm/chat",
                            "params": {"prompt": "Analyze this file", "file_path": path},
                        }
                        for i, path in enumerate(paths)
                    ],
                }
                async with GleitzeitClient(persistence="memory", ollama_url=url) as c:
                    start = time.perf_counter()
                    await c.run_workflow(doc)
                    return time.perf_counter() - start

            plain_seconds = trio.run(plain)
            server.stdin.write("\n")
            server.stdin.flush()
            server_peak = int(server.stdout.readline())
        finally:
            server.stdin.close()
            server.wait()
            server.stdout.close()
    rate = n / seconds
    ideal = bound / latency if latency > 0 else float("inf")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"files {n:,}, server latency {latency * 1000:g} ms, max_concurrent {bound}")
    print(f"successful {ok:,} in {seconds:.2f} s: {rate:,.0f} files/s")
    print(f"ideal {ideal:,.0f} files/s (max_concurrent / latency): ratio {rate / ideal:.2f}")
    print(
        f"the same files as a hand-written workflow: {n / plain_seconds:,.0f} files/s; "
        f"batch / plain time: {seconds / plain_seconds:.2f}"
    )
    print(f"peak requests in flight at the server: {server_peak}")
    print(f"open fds: {base_fds} before, peak {peak_fds} (+{peak_fds - base_fds})")
    print(f"peak memory growth: {grown / 1e6:.1f} MB, {grown / n:,.0f} B per file")
    return 0 if ok == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
