"""Run a workflow file (default: examples/hello.yaml) and print each task's result.

Usage: python examples/run_example.py [WORKFLOW_FILE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gleitzeit import GleitzeitError, SyncGleitzeitClient


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("hello.yaml")
    try:
        with SyncGleitzeitClient(persistence="memory") as client:
            results = client.run_workflow(path)
    except GleitzeitError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{path.name}: {len(results)} tasks completed")
    for task_id, result in results.items():
        print(f"  {task_id}: {json.dumps(result['result'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
