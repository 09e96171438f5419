"""Deterministic DAG shapes for the benchmarks: ``deps[i]`` = the nodes i depends on."""

from __future__ import annotations

import math
import random

__all__ = ["SHAPES", "chain", "diamond", "fan", "independent", "layered", "workflow"]


def chain(n: int) -> list[list[int]]:
    """0 <- 1 <- 2 ...: no parallelism at all."""
    return [[i - 1] if i else [] for i in range(n)]


def fan(n: int) -> list[list[int]]:
    """One root, n-2 parallel middles, one sink that needs them all."""
    if n < 3:
        return chain(n)
    return [[], *([0] for _ in range(n - 2)), list(range(1, n - 1))]


def independent(n: int) -> list[list[int]]:
    """No edges."""
    return [[] for _ in range(n)]


def layered(n: int, seed: int = 7) -> list[list[int]]:
    """Layers of width ~sqrt(n); each node has 1-3 parents in the layer before."""
    rnd = random.Random(seed)
    width = max(1, math.isqrt(n))
    deps: list[list[int]] = []
    for i in range(n):
        layer = i // width
        if layer == 0:
            deps.append([])
            continue
        lo, hi = (layer - 1) * width, layer * width
        deps.append(sorted({rnd.randrange(lo, hi) for _ in range(rnd.randint(1, 3))}))
    return deps


def diamond(n: int) -> list[list[int]]:
    """A lattice of rows of width ~sqrt(n); node (r, c) needs (r-1, c) and (r-1, c+1)."""
    width = max(1, math.isqrt(n))
    deps: list[list[int]] = []
    for i in range(n):
        r, c = divmod(i, width)
        if r == 0:
            deps.append([])
        else:
            up = (r - 1) * width
            deps.append(sorted({up + c, up + min(c + 1, width - 1)}))
    return deps


SHAPES = {
    "chain": chain,
    "fan": fan,
    "independent": independent,
    "layered": layered,
    "diamond": diamond,
}


def workflow(deps: list[list[int]], code: str = "result = 1") -> dict[str, object]:
    """A gleitzeit workflow document with one python/execute task per node."""
    return {
        "name": f"bench-{len(deps)}",
        "tasks": [
            {
                "id": f"t{i}",
                "method": "python/execute",
                "params": {"code": code},
                "dependencies": [f"t{d}" for d in needs],
            }
            for i, needs in enumerate(deps)
        ],
    }
