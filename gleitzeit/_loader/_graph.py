"""The tasks as a graph: ids and names, dependencies resolved, the cycle check.

The result is the workflow's :class:`~gleitzeit.core._plan.Plan`: dependencies
as task numbers in flat arrays. Dependencies that name task ids (the usual
case) are resolved all at once; names and ``${...}`` references one task at a
time; any problem sends the document to the exact path, which reports every
problem with its task and field.
"""

from __future__ import annotations

from array import array
from itertools import accumulate, chain, repeat
from operator import ge
from typing import TYPE_CHECKING, Any

from ..core._graph import as_lists, find_cycle
from ..core._plan import Plan, aliases_of
from ..core.errors import CircularDependencyError
from ._parse import Bail, Columns, TaskFields, parse_dependencies, parse_task, read_columns
from ._problems import Problems, closest

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..core._methods import MethodTable
    from ..core._refs import Ref

__all__ = ["parse_tasks"]


def parse_tasks(
    doc: Mapping[str, Any], problems: Problems, methods: MethodTable, source_dir: str | None
) -> Plan | None:
    """The plan of a document's tasks; None (with problems added) when they have problems.

    Raises:
        CircularDependencyError: the dependencies form a cycle.
    """
    raw_tasks = doc.get("tasks")
    if raw_tasks is None:
        problems.add("missing required field 'tasks' (a list of tasks)", None, "tasks")
        return None
    if not isinstance(raw_tasks, list):
        problems.add(
            f"'tasks' must be a list of tasks, not {type(raw_tasks).__name__}", None, "tasks"
        )
        return None
    if not raw_tasks:
        problems.add("'tasks' is empty; a workflow needs at least one task", None, "tasks")
        return None
    try:
        cols = read_columns(raw_tasks, methods, source_dir)
        ids = tuple(cols.ids)
        index = dict(zip(ids, range(len(ids)), strict=True))
        if len(index) != len(ids):
            raise Bail  # duplicate ids
        dep_start, dep_index, forward = _resolve(cols, ids, index)
    except Bail:
        return _parse_exactly(doc, raw_tasks, problems, methods, source_dir)
    if forward:  # a task depends on a later one: there may be a cycle
        _check_cycle(doc, ids, as_lists(dep_start, dep_index))
    return _plan(cols, ids, index, dep_start, dep_index)


def _resolve(
    cols: Columns, ids: tuple[str, ...], index: dict[str, int]
) -> tuple[array[int], array[int], bool]:
    """Dependencies as task numbers (CSR), and whether any points forward.

    Raises:
        Bail: a dependency or reference names no task, or names one ambiguously.
    """
    counts, flat = cols.counts, cols.flat
    if not cols.special:
        try:
            dep_index = array("q", map(index.__getitem__, flat))
        except (KeyError, TypeError):
            pass  # names, or something to report: task by task
        else:
            dep_start = array("q", [0])
            dep_start.extend(accumulate(counts))
            owners = chain.from_iterable(map(repeat, range(len(counts)), counts))
            return dep_start, dep_index, any(map(ge, dep_index, owners))
    by_name: dict[str, int | None] | None = None
    dep_start = array("q", [0])
    dep_index = array("q")
    forward = False
    pos = 0
    get = index.__getitem__
    special = cols.special
    for i, count in enumerate(counts):
        fields = special.get(i)
        found: Sequence[int] | None = None
        refs: Sequence[Ref] = ()
        if fields is None:
            given = flat[pos : pos + count]
            pos += count
            try:
                found = list(map(get, given))
            except (KeyError, TypeError):
                scratch = Problems()
                given = parse_dependencies(given, scratch, cols.names[i])
                if scratch.items:
                    raise Bail from None
        else:
            given, refs = fields.deps, fields.refs
        if found is None:
            if by_name is None:
                by_name = {}
                for j, name in enumerate(cols.names):
                    by_name[name] = None if name in by_name else j
            found = _lookup_exactly(given, refs, index, by_name)
        if found:
            dep_index.extend(found)
            if not forward and max(found) >= i:
                forward = True
        dep_start.append(len(dep_index))
    return dep_start, dep_index, forward


def _lookup_exactly(
    deps: Sequence[str],
    refs: Sequence[Ref],
    index: dict[str, int],
    by_name: dict[str, int | None],
) -> list[int]:
    """Dependencies and references by id or name, each task once, in order."""
    seen: dict[int, None] = {}
    for dep in deps:
        j = index.get(dep)
        if j is None:
            j = by_name.get(dep)
            if j is None:
                raise Bail
        seen[j] = None
    for ref in refs:
        j = index.get(ref.task)
        if j is None:
            j = by_name.get(ref.task)
            if j is None:
                raise Bail
        seen[j] = None
    return list(seen)


def _check_cycle(doc: Mapping[str, Any], ids: Sequence[str], deps: list[list[int]]) -> None:
    cycle = find_cycle(deps)
    if cycle is not None:
        on_it = [ids[i] for i in cycle]
        shown = " -> ".join(repr(t) for t in [*on_it, on_it[0]])
        raise CircularDependencyError(
            f"Workflow {doc.get('name')!r} has a dependency cycle: {shown} "
            "(each depends on the next); remove one of these dependencies.",
            data={"cycle": on_it, "workflow": doc.get("name")},
        )


def _plan(
    cols: Columns,
    ids: tuple[str, ...],
    index: dict[str, int],
    dep_start: array[int],
    dep_index: array[int],
) -> Plan:
    names = ids if cols.names == cols.ids else tuple(cols.names)
    options = [(f.index, f) for f in cols.options]
    return Plan(
        ids=ids,
        names=names,
        methods=tuple(cols.methods),
        protocols=tuple(cols.protocols),
        params=tuple(cols.params),
        dep_start=dep_start,
        dep_index=dep_index,
        needs_subst=bytes(cols.marked),
        by_id=index,
        aliases=aliases_of(ids, names),
        priorities=_priorities(len(ids), options),
        timeouts={i: f.timeout for i, f in options if f.timeout is not None},
        retries={i: f.retry for i, f in options if f.retry is not None},
        isolations={i: f.isolation for i, f in options if f.isolation is not None},
        descriptions={i: f.description for i, f in options if f.description is not None},
        tags={i: f.tags for i, f in options if f.tags},
        metadata={i: f.metadata for i, f in options if f.metadata},
    )


def _priorities(n: int, options: list[tuple[int, TaskFields]]) -> tuple[int, ...] | None:
    if not any(f.priority for _, f in options):
        return None
    priorities = [0] * n
    for i, f in options:
        priorities[i] = f.priority
    return tuple(priorities)


def _parse_exactly(
    doc: Mapping[str, Any],
    raw_tasks: list[Any],
    problems: Problems,
    methods: MethodTable,
    source_dir: str | None,
) -> Plan | None:
    """Every task through every check; every problem reported in document order."""
    parsed: list[TaskFields] = []
    for index, raw in enumerate(raw_tasks):
        fields = parse_task(raw, index, problems, methods, source_dir)
        if fields is not None:
            parsed.append(fields)

    by_id: dict[str, int] = {}
    by_name: dict[str, int | None] = {}  # None: the name is shared (ambiguous)
    for i, f in enumerate(parsed):
        tid = f.id
        if tid in by_id:
            problems.add(
                f"duplicate task id {tid!r} (also task number "
                f"{parsed[by_id[tid]].index + 1}); give each task its own id",
                f.name,
                "id",
            )
        else:
            by_id[tid] = i
        by_name[f.name] = None if f.name in by_name else i

    def lookup(ref: str) -> int | None:
        i = by_id.get(ref)
        return by_name.get(ref) if i is None else i

    deps_idx: list[list[int]] = []
    for f in parsed:
        label = f.name
        seen: dict[int, None] = {}
        for dep in f.deps:
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
        for ref in f.refs:
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
        return None

    ids = tuple(f.id for f in parsed)
    _check_cycle(doc, ids, deps_idx)
    cols = Columns()
    cols.ids = list(ids)
    cols.names = [f.name for f in parsed]
    cols.methods = [f.method for f in parsed]
    cols.protocols = [f.protocol for f in parsed]
    cols.params = [f.params for f in parsed]
    cols.marked = bytearray(f.marked for f in parsed)
    cols.options = parsed  # (no problems: every task was parsed, in order)
    dep_start = array("q", [0])
    dep_start.extend(accumulate(map(len, deps_idx)))
    dep_index = array("q", [j for deps in deps_idx for j in deps])
    return _plan(cols, ids, by_id, dep_start, dep_index)
