"""Dependency graphs over task indexes: order checks and cycle finding.

Everything is iterative and linear in tasks + edges, so a workflow of a
million tasks validates without recursion limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["dependents_of", "find_cycle", "topological_order"]


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
