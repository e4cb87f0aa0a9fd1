"""Pattern search over step positions (Hooke and Jeeves 1961), the search `fit_schedule` and the
default-schedule benchmarks run: positions p in [0, 1] of the levels in log sigma, p_0 = 1 fixed,
the rest decreasing and at least MIN_GAP apart."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

_F64 = torch.float64
MIN_GAP = 2e-3  # smallest distance between two positions (a factor 1.02 in sigma)


def pattern_search(
    f: Callable[[Tensor], float],
    p: Tensor,
    best: float,
    out_of_time: Callable[[], bool],
    on_sweep: Callable[[Tensor, float], None] | None = None,
    step0: float = 0.03,
) -> tuple[Tensor, float]:
    """Minimise f over positions p (p[0] = 1 fixed, the rest free and legal, see is_legal) from
    p with f(p) = best: coordinate moves of per-position size that grows 1.5x on success and
    halves on failure, until every size is below 1e-3 or out_of_time()."""
    p = p.clone()
    n = len(p)
    step = torch.full((n,), step0, dtype=_F64)
    direction = torch.ones(n, dtype=_F64)
    while not out_of_time() and float(step[1:].max()) > 1e-3:
        for i in range(1, n):
            if step[i] <= 1e-3:
                continue
            for sign in (float(direction[i]), -float(direction[i])):
                if out_of_time():
                    break
                q = p.clone()
                q[i] = q[i] + sign * step[i]
                if not is_legal(q):
                    continue
                v = f(q)
                if v < best:
                    p, best, direction[i] = q, v, sign
                    step[i] *= 1.5
                    break
            else:
                step[i] *= 0.5
        if on_sweep is not None:
            on_sweep(p, best)
    return p, best


def is_legal(p: Tensor) -> bool:
    """p_0 = 1 > p_1 > ... > p_{n-1} >= 0, neighbours at least MIN_GAP apart."""
    if float(p[-1]) < 0:
        return False
    return bool(((p[:-1] - p[1:]) >= MIN_GAP - 1e-12).all())


def legal(p: Tensor) -> Tensor:
    """The nearest legal positions (clamped into [0, 1), spread to MIN_GAP apart)."""
    p = p.clone()
    p[0] = 1.0
    n = len(p)
    for i in range(n - 1, 0, -1):
        p[i] = max(float(p[i]), (n - 1 - i) * MIN_GAP)
    for i in range(1, n):
        p[i] = min(float(p[i]), float(p[i - 1]) - MIN_GAP)
    return p
