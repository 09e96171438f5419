"""Tests for gleitzeit.core._graph: ordering and cycle finding."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gleitzeit.core._graph import as_lists, dependents_of, find_cycle, invert, topological_order

from .strategies import dags


def _is_cycle(deps: list[list[int]], cycle: list[int]) -> bool:
    return bool(cycle) and all(
        cycle[(k + 1) % len(cycle)] in deps[node] for k, node in enumerate(cycle)
    )


@given(dags())
def test_random_dag_has_order_and_no_cycle(deps: list[list[int]]) -> None:
    """Every random DAG has a topological order that respects each edge."""
    order = topological_order(deps)
    assert order is not None
    assert sorted(order) == list(range(len(deps)))
    pos = {node: k for k, node in enumerate(order)}
    assert all(pos[d] < pos[i] for i, needs in enumerate(deps) for d in needs)
    assert find_cycle(deps) is None


@given(dags(min_size=1), st.data())
def test_back_edge_is_reported_as_a_real_cycle(deps: list[list[int]], data: st.DataObject) -> None:
    """Adding any back edge creates a cycle, and the reported ids really form one."""
    n = len(deps)
    # A back edge: an earlier task (or the task itself) depends on a later-or-equal one
    # that (transitively) depends on it. Pick j reachable-from i via dependents.
    i = data.draw(st.integers(0, n - 1))
    dependents = dependents_of(deps)
    reach, stack = {i}, [i]
    while stack:
        for j in dependents[stack.pop()]:
            if j not in reach:
                reach.add(j)
                stack.append(j)
    j = data.draw(st.sampled_from(sorted(reach)))
    broken = [list(d) for d in deps]
    broken[i].append(j)  # i now depends on j, which depends on i (or j == i)
    assert topological_order(broken) is None
    cycle = find_cycle(broken)
    assert cycle is not None
    assert _is_cycle(broken, cycle)
    assert len(set(cycle)) == len(cycle)


def test_self_dependency_is_a_cycle_of_one() -> None:
    """A task that depends on itself is a one-task cycle."""
    assert find_cycle([[], [1]]) == [1]


def test_long_chain_needs_no_recursion() -> None:
    """A chain far deeper than the recursion limit orders and finds its cycle iteratively."""
    n = 200_000
    deps = [[i - 1] if i else [] for i in range(n)]
    assert topological_order(deps) == list(range(n))
    deps[0] = [n - 1]
    cycle = find_cycle(deps)
    assert cycle is not None
    assert len(cycle) == n
    assert _is_cycle(deps, cycle)


@given(st.lists(st.lists(st.integers(0, 19), max_size=4), min_size=1, max_size=20))
def test_csr_inverse_lists_each_tasks_dependents_in_order(deps: list[list[int]]) -> None:
    """The flat-array inverse holds, per task, exactly the tasks naming it (any graph)."""
    deps = [[d % len(deps) for d in needs] for needs in deps]
    start = [0]
    for needs in deps:
        start.append(start[-1] + len(needs))
    index = [d for needs in deps for d in needs]
    assert as_lists(start, index) == deps
    out_start, out_index = invert(start, index)
    assert as_lists(out_start, out_index) == dependents_of(deps)
