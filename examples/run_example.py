"""Run examples/hello.yaml and print each task's result.

Usage: python examples/run_example.py [WORKFLOW_FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

import gleitzeit


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("hello.yaml")
    try:
        workflow = gleitzeit.load_workflow(path)
    except gleitzeit.GleitzeitError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"Workflow {workflow.name!r}: {workflow.total_tasks} tasks, valid")
    for task in workflow.tasks:
        needs = ", ".join(task.dependencies) or "-"
        print(f"  {task.id:<10} {task.method:<16} needs: {needs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
