"""Which rows go into which batch: group-pure batches for scoring, sequential ones for evaluation,
and each process's share of them under torchrun. Row indices only; no images. (Training draws its
batches in method/objectives, as its objective asks.)"""

from __future__ import annotations

import numpy as np


def group_pure_batches(
    group_index: np.ndarray,
    num_groups: int,
    *,
    batch_size: int,
    max_batches: int | None = None,
    samples_per_group: int | None = None,
    seed: int = 0,
) -> list[tuple[int, list[int]]]:
    """``(group, row indices)`` batches in which every row belongs to the group.

    Rows keep table order within a group; the last batch of a group may be smaller.
    ``samples_per_group`` takes a seeded random subset of that size from each larger group.
    """
    generator = np.random.default_rng(seed)
    batches: list[tuple[int, list[int]]] = []
    for group in range(num_groups):
        rows = np.flatnonzero(group_index == group)
        if samples_per_group is not None and len(rows) > samples_per_group:
            rows = np.sort(generator.choice(rows, size=samples_per_group, replace=False))
        chunks = [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
        if max_batches is not None:
            chunks = chunks[:max_batches]
        batches.extend((group, chunk.tolist()) for chunk in chunks)
    return batches


def sequential_batches(num_rows: int, batch_size: int) -> list[list[int]]:
    """Rows 0..n-1 in batches of ``batch_size``, in order."""
    return [list(range(start, min(start + batch_size, num_rows))) for start in range(0, num_rows, batch_size)]


# ------------------------------------------------------------- shares of the batches (torchrun)


def share_of_each_group(
    batches: list[tuple[int, list[int]]], *, rank: int, world_size: int
) -> list[tuple[int, list[int]]]:
    """This rank's group-pure batches: batch i of group g goes to rank i % world_size, so every
    rank scores part of every group and the batches themselves are those of one process."""
    position: dict[int, int] = {}
    mine = []
    for group, rows in batches:
        index = position.get(group, 0)
        position[group] = index + 1
        if index % world_size == rank:
            mine.append((group, rows))
    return mine


def share_of(batches: list[list[int]], *, rank: int, world_size: int) -> list[list[int]]:
    """Batch i goes to rank i % world_size (evaluation: shares may differ by one batch)."""
    return batches[rank::world_size]


def equal_share_of(batches: list[list[int]], *, rank: int, world_size: int) -> list[list[int]]:
    """As :func:`share_of`, with the epoch's first batches repeated so that every rank gets
    the same number of batches (DDP steps every rank together; DistributedSampler pads alike)."""
    missing = -len(batches) % world_size
    padded = batches + [batches[i % len(batches)] for i in range(missing)] if batches else batches
    return padded[rank::world_size]
