"""The FairGRAPE greedy of docs/design.md, step by step in plain Python: the specification the
compiled selection must match exactly. Slow on purpose; only for small inputs."""

from __future__ import annotations

import math


def reference_keep(scores, candidates, keep, magnitudes=None, already_kept=None):
    """scores: G lists of n floats; candidates: n bools; returns n bools (True = kept)."""
    num_groups = len(scores)
    n = len(candidates)
    pool = [i for i in range(n) if candidates[i]]
    kept = list(already_kept) if already_kept is not None else [False] * n
    if keep >= len(pool):
        return list(candidates)
    if keep <= sum(kept):
        return kept
    if all(scores[g][i] == 0 for g in range(num_groups) for i in pool):
        scores = [[abs(m) for m in magnitudes]]  # all-zero importance: magnitude order
        num_groups = 1
    totals = [math.fsum(scores[g][i] for i in pool) for g in range(num_groups)]
    overall = sum(totals)
    targets = [t / overall if overall > 0 else 1.0 / num_groups for t in totals]
    rankings = [sorted(pool, key=lambda i, g=g: (-scores[g][i], i)) for g in range(num_groups)]
    sums = [0.0] * num_groups
    for i in range(n):
        if kept[i]:
            for g in range(num_groups):
                sums[g] += scores[g][i]
    pointers = [0] * num_groups
    while sum(kept) < keep:
        total = 0.0
        for g in range(num_groups):
            total += sums[g]
        shares = [sums[g] / total if total > 0 else 1.0 / num_groups for g in range(num_groups)]
        gaps = [shares[g] - targets[g] for g in range(num_groups)]
        chosen = min(range(num_groups), key=lambda g: (gaps[g], g))
        while kept[rankings[chosen][pointers[chosen]]]:
            pointers[chosen] += 1
        weight = rankings[chosen][pointers[chosen]]
        kept[weight] = True
        for g in range(num_groups):
            sums[g] += scores[g][weight]
    return kept
