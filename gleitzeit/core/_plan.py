"""The plan: a validated workflow's tasks in columns, as the engine runs them.

The loader builds one :class:`Plan` per workflow and the workflow carries it as
its ``tasks``. Each task is a row: ``ids[i]``, ``names[i]``, ``methods[i]``,
``params[i]``; its dependencies are ``dep_index[dep_start[i]:dep_start[i + 1]]``
(task numbers in flat arrays, CSR), and the fields most tasks leave out
(timeout, retry, isolation, ...) sit in small dicts keyed by task number.

A plan is a read-only sequence of :class:`~gleitzeit.core._models.Task`: the
``Task`` objects are made only when someone asks for them (a status snapshot,
``workflow.tasks[i]``), once each. The engine reads the columns.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, overload

from ._graph import invert
from ._models import RetryPolicy, Task, TaskStatus

__all__ = ["Plan", "has_marker"]

_NO_OPTIONS: Final[Mapping[int, Any]] = {}
_set: Final = object.__setattr__
_NO_ALIASES: Final[Mapping[str, str]] = {}


class Plan(Sequence[Task]):
    """A validated workflow's tasks in columns; build it with the loader.

    Attributes:
        ids: Task ids, in document order.
        names: Task names (the same tuple as ``ids`` when every name is its id).
        methods: Each task's method; ``protocols`` its protocol.
        params: Each task's params, as written (``${...}`` not substituted).
        dep_start: ``len(ids) + 1`` offsets into ``dep_index``.
        dep_index: The task numbers each task depends on, one run per task
            (references included).
        needs_subst: 1 for a task whose params hold ``${...}`` (or ``$${``).
        by_id: Task id → task number.
        aliases: Task name → id, for the names that differ from their id.
        priorities: Each task's priority, or None when all are 0.
        timeouts, retries, isolations, descriptions, tags, metadata: the
            optional fields, by task number, for the tasks that set them.
    """

    __slots__ = (
        "_dependents",
        "_tasks",
        "aliases",
        "by_id",
        "dep_index",
        "dep_start",
        "descriptions",
        "ids",
        "isolations",
        "metadata",
        "methods",
        "names",
        "needs_subst",
        "params",
        "priorities",
        "protocols",
        "retries",
        "tags",
        "timeouts",
    )

    ids: tuple[str, ...]
    names: tuple[str, ...]
    methods: tuple[str, ...]
    protocols: tuple[str, ...]
    params: tuple[dict[str, Any], ...]
    dep_start: array[int]
    dep_index: array[int]
    needs_subst: bytes
    by_id: Mapping[str, int]
    aliases: Mapping[str, str]
    priorities: tuple[int, ...] | None
    timeouts: Mapping[int, float]
    retries: Mapping[int, RetryPolicy]
    isolations: Mapping[int, str]
    descriptions: Mapping[int, str]
    tags: Mapping[int, tuple[str, ...]]
    metadata: Mapping[int, dict[str, Any]]
    _tasks: list[Task | None] | None
    _dependents: tuple[array[int], array[int]] | None

    def __init__(
        self,
        *,
        ids: tuple[str, ...],
        names: tuple[str, ...],
        methods: tuple[str, ...],
        protocols: tuple[str, ...],
        params: tuple[dict[str, Any], ...],
        dep_start: array[int],
        dep_index: array[int],
        needs_subst: bytes,
        by_id: Mapping[str, int],
        aliases: Mapping[str, str] = _NO_ALIASES,
        priorities: tuple[int, ...] | None = None,
        timeouts: Mapping[int, float] = _NO_OPTIONS,
        retries: Mapping[int, RetryPolicy] = _NO_OPTIONS,
        isolations: Mapping[int, str] = _NO_OPTIONS,
        descriptions: Mapping[int, str] = _NO_OPTIONS,
        tags: Mapping[int, tuple[str, ...]] = _NO_OPTIONS,
        metadata: Mapping[int, dict[str, Any]] = _NO_OPTIONS,
    ) -> None:
        _set(self, "ids", ids)
        _set(self, "names", names)
        _set(self, "methods", methods)
        _set(self, "protocols", protocols)
        _set(self, "params", params)
        _set(self, "dep_start", dep_start)
        _set(self, "dep_index", dep_index)
        _set(self, "needs_subst", needs_subst)
        _set(self, "by_id", by_id)
        _set(self, "aliases", aliases)
        _set(self, "priorities", priorities)
        _set(self, "timeouts", timeouts)
        _set(self, "retries", retries)
        _set(self, "isolations", isolations)
        _set(self, "descriptions", descriptions)
        _set(self, "tags", tags)
        _set(self, "metadata", metadata)
        _set(self, "_tasks", None)  # Task objects, made on demand
        _set(self, "_dependents", None)  # the inverse CSR, made on demand

    @classmethod
    def from_tasks(cls, tasks: Sequence[Task]) -> Plan:
        """The plan of tasks built by hand (their dependencies must name task ids).

        Raises:
            KeyError: a dependency names no task id.
        """
        if isinstance(tasks, Plan):
            return tasks
        ids = tuple(t.id for t in tasks)
        names = tuple(t.name for t in tasks)
        index = dict(zip(ids, range(len(ids)), strict=True))
        dep_index = array("q", [index[d] for t in tasks for d in t.dependencies])
        dep_start = array("q", [0])
        for t in tasks:
            dep_start.append(dep_start[-1] + len(t.dependencies))
        from ._refs import scan_refs  # deferred: the refs module is big

        return cls(
            ids=ids,
            names=ids if names == ids else names,
            methods=tuple(t.method for t in tasks),
            protocols=tuple(t.protocol for t in tasks),
            params=tuple(t.params for t in tasks),
            dep_start=dep_start,
            dep_index=dep_index,
            needs_subst=bytes(scan_refs(t.params)[1] for t in tasks),
            by_id=index,
            aliases=aliases_of(ids, names),
            priorities=tuple(t.priority for t in tasks) if any(t.priority for t in tasks) else None,
            timeouts={i: t.timeout for i, t in enumerate(tasks) if t.timeout is not None},
            retries={i: t.retry for i, t in enumerate(tasks) if t.retry is not None},
            isolations={i: t.isolation for i, t in enumerate(tasks) if t.isolation is not None},
            descriptions={
                i: t.description for i, t in enumerate(tasks) if t.description is not None
            },
            tags={i: t.tags for i, t in enumerate(tasks) if t.tags},
            metadata={i: t.metadata for i, t in enumerate(tasks) if t.metadata},
        )

    # --- the graph ------------------------------------------------------------

    def deps_of(self, i: int) -> array[int]:
        """The task numbers task ``i`` depends on."""
        return self.dep_index[self.dep_start[i] : self.dep_start[i + 1]]

    def dependents(self) -> tuple[array[int], array[int]]:
        """``(start, index)``: the tasks depending on each task, in CSR (computed once)."""
        found = self._dependents
        if found is None:
            found = invert(self.dep_start, self.dep_index)
            _set(self, "_dependents", found)
        return found

    # --- the sequence of Task ---------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> Task: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[Task, ...]: ...

    def __getitem__(self, i: int | slice) -> Task | tuple[Task, ...]:
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self.ids))))
        made = self._tasks
        if made is None:
            made = [None] * len(self.ids)
            _set(self, "_tasks", made)
        task = made[i]
        if task is None:
            if i < 0:
                i += len(self.ids)
            task = made[i] = self._task(i)
        return task

    def __iter__(self) -> Iterator[Task]:
        for i in range(len(self.ids)):
            yield self[i]

    def with_statuses(self, statuses: Iterable[TaskStatus]) -> tuple[Task, ...]:
        """New Task objects with these statuses, one per task (a status snapshot)."""
        return tuple(map(self._task, range(len(self.ids)), statuses))

    def _task(self, i: int, status: TaskStatus = TaskStatus.PENDING) -> Task:
        ids = self.ids
        deps = self.dep_index[self.dep_start[i] : self.dep_start[i + 1]]
        dependencies = tuple(ids[j] for j in deps)
        if len(dependencies) > 1:  # a task named twice (or by id and reference) counts once
            dependencies = tuple(dict.fromkeys(dependencies))
        return Task(
            id=ids[i],
            name=self.names[i],
            method=self.methods[i],
            protocol=self.protocols[i],
            params=self.params[i],
            dependencies=dependencies,
            timeout=self.timeouts.get(i),
            retry=self.retries.get(i),
            priority=self.priorities[i] if self.priorities is not None else 0,
            isolation=self.isolations.get(i),
            description=self.descriptions.get(i),
            tags=self.tags.get(i, ()),
            metadata=self.metadata.get(i) or {},
            status=status,
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a plan is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a plan is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy: the columns, not the memos
        fields = {k: getattr(self, k) for k in self.__slots__ if not k.startswith("_")}
        return (_rebuild, (fields,))

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"<Plan of {len(self.ids)} tasks>"


def _rebuild(fields: dict[str, Any]) -> Plan:
    return Plan(**fields)


def aliases_of(ids: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """Task name → id for references by name (the first task of a name wins).

    Names equal to their id are left out: a reference tries ids first.
    """
    if names is ids:
        return {}
    first: dict[str, str] = {}
    for name, tid in zip(names, ids, strict=True):
        first.setdefault(name, tid)
    return {name: tid for name, tid in first.items() if name != tid}


def has_marker(value: Any) -> bool:
    """True if a string anywhere in ``value`` holds ``${`` (a reference, or the
    ``$${`` escape): whether a task's params need substituting (``needs_subst``)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is str:
            if "${" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False
