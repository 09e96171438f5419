"""Loading big workflow documents. Prints figures; asserts nothing.

    python benchmarks/load.py --quick     # N = 10,000 (a few seconds)
    python benchmarks/load.py             # N = 100,000
    python benchmarks/load.py --n 50000   # any N

Writes one generated workflow (a random layered DAG of ``python/execute``
tasks, as ``run.py`` uses) as a YAML and a JSON file, then measures, each in
a fresh process:

  yaml-parse     libyaml's own parse of the YAML file (``yaml.load`` with
                 ``CLoader``, or ``CSafeLoader``): the floor for YAML
  yaml-load      ``load_workflow`` of the YAML file (read, parse, validate, plan)
  json-parse     ``json.loads`` of the JSON file: the floor for JSON
  json-load      ``load_workflow`` of the JSON file
  dict-load      ``load_workflow`` of the same document already in memory

Per case: seconds (the best of ``--repeat`` runs), µs per task, the ratio to
its floor, and the peak RSS growth per task while loading (peak resident size
minus the size after imports, over N), for the document and the plan together.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dags import layered, workflow  # noqa: E402

CASES = ["yaml-parse", "yaml-load", "json-parse", "json-load", "dict-load"]
FLOOR = {"yaml-load": "yaml-parse", "json-load": "json-parse", "dict-load": "json-parse"}

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {here!r})
case, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
import yaml
from gleitzeit import load_workflow
loader = getattr(yaml, "CLoader", None) or getattr(yaml, "CSafeLoader", yaml.SafeLoader)
doc = None
if case == "dict-load":
    from dags import layered, workflow
    doc = workflow(layered(n))
    load_workflow(workflow(layered(10)))  # imports the providers' methods first

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

def peak():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

try:  # start the peak afresh: import-time peaks are not loading
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
base = rss()
start = time.perf_counter()
if case == "yaml-parse":
    with open(path, encoding="utf-8") as f:
        out = yaml.load(f.read(), Loader=loader)
elif case == "json-parse":
    with open(path, encoding="utf-8") as f:
        out = json.loads(f.read())
elif case == "dict-load":
    out = load_workflow(doc)
else:
    out = load_workflow(path)
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak": peak() - base}}))
"""


def _write(n: int, folder: Path) -> tuple[Path, Path]:
    import yaml

    doc = workflow(layered(n))
    json_path = folder / "big.json"
    json_path.write_text(json.dumps(doc), encoding="utf-8")
    dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    yaml_path = folder / "big.yaml"
    with yaml_path.open("w", encoding="utf-8") as f:
        yaml.dump(doc, f, Dumper=dumper, sort_keys=False)
    return yaml_path, json_path


def _child(case: str, path: Path, n: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(script), case, str(path), str(n)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 10,000")
    parser.add_argument("--n", type=int, default=None, help="tasks (default 100,000)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per case (best taken)")
    args = parser.parse_args()
    n = args.n or (10_000 if args.quick else 100_000)
    repeat = args.repeat or (3 if args.quick else 2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = folder / "child.py"
        script.write_text(CHILD.format(here=str(HERE)), encoding="utf-8")
        start = time.perf_counter()
        yaml_path, json_path = _write(n, folder)
        print(
            f"{n:,} tasks: YAML {yaml_path.stat().st_size / 1e6:.1f} MB, "
            f"JSON {json_path.stat().st_size / 1e6:.1f} MB "
            f"(written in {time.perf_counter() - start:.1f} s); best of {repeat} runs"
        )
        results: dict[str, dict[str, float]] = {}
        for _ in range(repeat):  # interleaved, so a busy spell hits every case alike
            for case in CASES:
                path = yaml_path if case.startswith("yaml") else json_path
                got = _child(case, path, n, script)
                best = results.setdefault(case, got)
                best["seconds"] = min(best["seconds"], got["seconds"])
                best["peak"] = min(best["peak"], got["peak"])
    print(f"{'case':<12} {'seconds':>9} {'µs/task':>9} {'× floor':>8} {'peak B/task':>12}")
    for case in CASES:
        r = results[case]
        floor = FLOOR.get(case)
        ratio = f"{r['seconds'] / results[floor]['seconds']:.2f}" if floor else "-"
        print(
            f"{case:<12} {r['seconds']:>9.3f} {r['seconds'] / n * 1e6:>9.1f} "
            f"{ratio:>8} {r['peak'] / n:>12,.0f}"
        )
    print(
        "goals: yaml-load <= 1.2 x yaml-parse; json-load <= 2 s at 100,000; "
        "<= 2,048 B/task while loading"
    )


if __name__ == "__main__":
    main()
