"""The FairGRAPE greedy step loop, compiled with numba.

The loop is sequential by nature (each pick changes the shares that decide the next), so it runs
in compiled code; rankings are computed beforehand with torch. ``tests/greedy_reference.py`` holds
the plain-Python statement of the same steps that this kernel must match exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def greedy_fill(order, scores, kept, sums, targets, pointers, quota):  # pragma: no cover - compiled
    """Add up to ``quota`` weights to ``kept``; return how many were added.

    order:    int64 [G, m]  each group's candidates, best first (a prefix of its full ranking)
    scores:   float [G, n]  importance per group of every weight (flat)
    kept:     bool  [n]     in/out: the kept set K
    sums:     float64 [G]   in/out: S_g = sum over K of I_g
    targets:  float64 [G]   t_g
    pointers: int64 [G]     in/out: position of each group's next unexamined rank
    Returns early, with fewer than ``quota`` added, only when the chosen group's prefix of
    ``order`` is exhausted; the caller extends the prefix and calls again with the same state.
    """
    num_groups = order.shape[0]
    length = order.shape[1]
    added = 0
    while added < quota:
        total = 0.0
        for g in range(num_groups):
            total += sums[g]
        chosen = 0
        lowest = np.inf
        for g in range(num_groups):
            share = sums[g] / total if total > 0.0 else 1.0 / num_groups
            gap = share - targets[g]
            if gap < lowest:  # strict: the lowest group index wins ties
                lowest = gap
                chosen = g
        position = pointers[chosen]
        while position < length and kept[order[chosen, position]]:
            position += 1
        pointers[chosen] = position
        if position == length:
            return added
        weight = order[chosen, position]
        kept[weight] = True
        pointers[chosen] = position + 1
        for g in range(num_groups):
            sums[g] += scores[g, weight]
        added += 1
    return added
