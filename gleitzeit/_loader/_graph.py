"""The tasks as a graph: ids and names, dependencies resolved, the cycle check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core._graph import find_cycle
from ..core._models import Task
from ..core.errors import CircularDependencyError
from ._parse import parse_task
from ._problems import Problems, closest

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..core._methods import MethodTable

__all__ = ["parse_tasks"]


def parse_tasks(
    doc: Mapping[str, Any], problems: Problems, methods: MethodTable, source_dir: str | None
) -> tuple[tuple[Task, ...], tuple[list[list[int]], bytearray] | None]:
    raw_tasks = doc.get("tasks")
    if raw_tasks is None:
        problems.add("missing required field 'tasks' (a list of tasks)", None, "tasks")
        return (), None
    if not isinstance(raw_tasks, list):
        problems.add(
            f"'tasks' must be a list of tasks, not {type(raw_tasks).__name__}", None, "tasks"
        )
        return (), None
    if not raw_tasks:
        problems.add("'tasks' is empty; a workflow needs at least one task", None, "tasks")
        return (), None

    parsed: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_tasks):
        fields = parse_task(raw, index, problems, methods, source_dir)
        if fields is not None:
            parsed.append(fields)

    by_id: dict[str, int] = {}
    by_name: dict[str, int | None] = {}  # None: the name is shared (ambiguous)
    for i, f in enumerate(parsed):
        tid = f["id"]
        if tid in by_id:
            problems.add(
                f"duplicate task id {tid!r} (also task number "
                f"{parsed[by_id[tid]]['_index'] + 1}); give each task its own id",
                f["name"],
                "id",
            )
        else:
            by_id[tid] = i
        by_name[f["name"]] = None if f["name"] in by_name else i

    def lookup(ref: str) -> int | None:
        i = by_id.get(ref)
        return by_name.get(ref) if i is None else i

    deps_idx: list[list[int]] = []
    for f in parsed:
        label = f["name"]
        # Fast path: dependencies named by id, each once, and no references.
        given = f["deps"]
        if not f["refs"]:
            found: list[int] | None = []
            for d in given:
                j = by_id.get(d)
                if j is None:
                    found = None
                    break
                found.append(j)  # type: ignore[union-attr]
            if found is not None and (len(found) < 2 or len(set(found)) == len(found)):
                deps_idx.append(found)
                f["dep_ids"] = tuple(given)
                continue
        f["dep_ids"] = None
        seen: dict[int, None] = {}
        for dep in f["deps"]:
            j = lookup(dep)
            if j is None:
                if dep in by_name:
                    problems.add(
                        f"dependency {dep!r} is ambiguous: several tasks have "
                        "that name; depend on an id instead",
                        label,
                        "dependencies",
                    )
                else:
                    problems.add(
                        f"dependency {dep!r} names no task in this workflow"
                        f"{closest(dep, [*by_id, *by_name])}",
                        label,
                        "dependencies",
                    )
            else:
                seen[j] = None
        for ref in f["refs"]:
            j = lookup(ref.task)
            if j is None:
                problems.add(
                    f"reference {ref.text} names no task {ref.task!r} in this "
                    f"workflow{closest(ref.task, [*by_id, *by_name])}; to pass the text "
                    f"{ref.text} itself, escape it as ${ref.text}",
                    label,
                    "params",
                )
            else:
                seen[j] = None
        deps_idx.append(list(seen))
    if problems.items:
        return (), None

    cycle = find_cycle(deps_idx)
    if cycle is not None:
        ids = [parsed[i]["id"] for i in cycle]
        shown = " -> ".join(repr(t) for t in [*ids, ids[0]])
        raise CircularDependencyError(
            f"Workflow {doc.get('name')!r} has a dependency cycle: {shown} "
            "(each depends on the next); remove one of these dependencies.",
            data={"cycle": ids, "workflow": doc.get("name")},
        )
    tasks = tuple(
        Task(
            id=f["id"],
            name=f["name"],
            method=f["method"],
            protocol=f["protocol"],
            params=f["params"],
            dependencies=f["dep_ids"]
            if f["dep_ids"] is not None
            else tuple(parsed[j]["id"] for j in deps),
            timeout=f["timeout"],
            retry=f["retry"],
            priority=f["priority"],
            isolation=f["isolation"],
            description=f["description"],
            tags=f["tags"],
            metadata=f["metadata"],
        )
        for f, deps in zip(parsed, deps_idx, strict=True)
    )
    return tasks, (deps_idx, bytearray(f["marked"] for f in parsed))
