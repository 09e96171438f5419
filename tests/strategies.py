"""Hypothesis strategies: random DAGs and JSON values."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

#: Any JSON value (finite floats only: JSON has no NaN).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def dags(draw: st.DrawFn, min_size: int = 1, max_size: int = 30) -> list[list[int]]:
    """A random DAG as ``deps[i]`` = the tasks i depends on (all with a lower index)."""
    n = draw(st.integers(min_size, max_size))
    deps: list[list[int]] = []
    for i in range(n):
        if i == 0:
            deps.append([])
            continue
        deps.append(sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 3)))))
    return deps


def dag_workflow(
    deps: list[list[int]], name: str = "random dag", params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A workflow document with one python task per node of ``deps``."""
    return {
        "name": name,
        "tasks": [
            {
                "name": f"t{i}",
                "method": "python/execute",
                "params": dict(params) if params else {"code": f"result = {i}"},
                "dependencies": [f"t{d}" for d in needs],
            }
            for i, needs in enumerate(deps)
        ],
    }
