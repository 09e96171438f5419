"""Dependency graphs over task indexes: order checks and cycle finding.

Everything is iterative and linear in tasks + edges, so a workflow of a
million tasks validates without recursion limits.
"""

from __future__ import annotations

from array import array
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["as_lists", "dependents_of", "find_cycle", "invert", "topological_order"]


def invert(start: Sequence[int], index: Sequence[int]) -> tuple[array[int], array[int]]:
    """Invert a graph in CSR form (task i → ``index[start[i]:start[i + 1]]``).

    Returns the ``(start, index)`` of the reverse edges; each task's list keeps
    task order. Linear in tasks + edges.
    """
    n = len(start) - 1
    counts = [0] * (n + 1)
    for j in index:
        counts[j + 1] += 1
    out_start = list(accumulate(counts))
    pos = out_start[:-1]
    out = [0] * len(index)
    for i in range(n):
        lo, hi = start[i], start[i + 1]
        if lo == hi:
            continue
        for j in index[lo:hi]:
            p = pos[j]
            out[p] = i
            pos[j] = p + 1
    return array("q", out_start), array("q", out)


def as_lists(start: Sequence[int], index: Sequence[int]) -> list[list[int]]:
    """A CSR graph as one list per task."""
    return [list(index[start[i] : start[i + 1]]) for i in range(len(start) - 1)]


def dependents_of(deps: Sequence[Sequence[int]]) -> list[list[int]]:
    """Invert ``deps`` (task → the tasks it needs) into task → the tasks needing it."""
    out: list[list[int]] = [[] for _ in deps]
    for i, needs in enumerate(deps):
        for d in needs:
            out[d].append(i)
    return out


def topological_order(deps: Sequence[Sequence[int]]) -> list[int] | None:
    """Return an order in which every task comes after its dependencies.

    Kahn's algorithm; ties keep index order among tasks ready at once.
    Returns None when the graph has a cycle.
    """
    order = _kahn(deps)
    return order if len(order) == len(deps) else None


def find_cycle(deps: Sequence[Sequence[int]]) -> list[int] | None:
    """Return the task indexes along one cycle, or None if there is none.

    In the returned list each task depends on the next one, and the last
    depends on the first; a task that depends on itself is a cycle of one.
    """
    order = _kahn(deps)
    if len(order) < len(deps):
        placed = bytearray(len(deps))
        for i in order:
            placed[i] = 1
        # Every task Kahn could not place depends on another unplaced task, so
        # walking unplaced dependencies must come back to a task already seen.
        start = next(i for i in range(len(deps)) if not placed[i])
        seen: dict[int, int] = {}
        path: list[int] = []
        node = start
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = next(d for d in deps[node] if not placed[d])
        return path[seen[node] :]
    return None


def _kahn(deps: Sequence[Sequence[int]]) -> list[int]:
    """Kahn's algorithm: the tasks placeable in dependency order, in that order."""
    indegree = [len(d) for d in deps]
    dependents = dependents_of(deps)
    order = [i for i in range(len(deps)) if indegree[i] == 0]
    head = 0
    while head < len(order):
        for j in dependents[order[head]]:
            indegree[j] -= 1
            if indegree[j] == 0:
                order.append(j)
        head += 1
    return order
