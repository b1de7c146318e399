"""Rankings for selection: each score row's candidates in descending order (ties: lower flat index
first), only as deep as the greedy reads, sorted with torch on integer keys; and the two-thread
helpers that run layers and rows on both cores.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

CORES = 2  # more threads would hold more layers in memory at once; the target machine has 2


def on_both_cores(function: Callable, items: Iterator) -> Iterator:
    """``function(item)`` for each item, in order, on two threads (torch and the compiled loops
    release the GIL). Items are drawn only as threads free up: a few layers in memory at once."""
    with torch_threads(1), ThreadPoolExecutor(CORES, thread_name_prefix="fairgrape-select") as pool:
        pending: deque = deque()
        for item in items:
            if len(pending) > CORES:  # one queued beyond the running ones keeps both busy
                yield pending.popleft().result()
            pending.append(pool.submit(function, item))
        while pending:
            yield pending.popleft().result()


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Torch's own threads off while our threads share the cores: several threads each asking
    for both cores make torch's sorts many times slower (measured), not faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _is_top(places: int, size: int) -> bool:
    """Whether ranking only the first ``places`` is cheaper than sorting all ``size``: finding
    and sorting the top costs about as much as a full radix sort at 25-40% (measured)."""
    return 4 * places < size


def rankings(
    rows: torch.Tensor,
    candidates: torch.Tensor,
    length: int,
    *,
    threads: int = 1,
    previous: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[R, length]``: the first ``length`` places of each row's ranking of the candidates;
    ``previous`` (the first places, ``[R, m]``) are copied and only the places after them ranked."""
    index_dtype = torch.int32 if rows.shape[1] < 2**31 else torch.int64  # half the memory
    order = torch.empty(rows.shape[0], length, dtype=index_dtype)
    start = previous.shape[1] if previous is not None else 0

    def rank(r: int) -> None:
        after = None
        if start:
            order[r, :start] = previous[r]
            after = int(previous[r, start - 1])
        ranking_places(rows[r], candidates, out=order[r, start:], after=after)

    if threads > 1:
        for _ in on_both_cores(rank, iter(range(rows.shape[0]))):
            pass
    else:
        for r in range(rows.shape[0]):
            rank(r)
    return order


def ranking_places(
    row: torch.Tensor, candidates: torch.Tensor, *, out: torch.Tensor, after: int | None = None
) -> torch.Tensor:
    """Write into ``out`` the flat indices of the next ``len(out)`` places of the ranking of the
    candidates by ``row`` (best first, ties by lower index: a stable descending sort), from the
    top or from just after the place of weight ``after``."""
    keys, shift = _descending_keys(row, candidates)
    count = out.numel()
    if after is None and not _is_top(count, keys.numel()):  # most of the ranking: sort it all
        values = scratch.take("values", keys.numel(), keys.dtype)
        indices = scratch.take("indices", keys.numel(), torch.int64)
        torch.sort(keys, stable=True, out=(values, indices))
        return out.copy_(indices[:count])
    from ._greedy import next_places

    # only the top of the ranking: the few keys that can be in it, found in two passes, sorted
    after_key = int(keys[after]) if after is not None else torch.iinfo(keys.dtype).min
    after_index = -1 if after is None else after
    near = torch.from_numpy(next_places(keys.numpy(), count, shift, after_key, after_index))
    return out.copy_(near[torch.sort(keys[near], stable=True).indices[:count]])


# Sort keys: a float's bits, remapped so that ascending integer order is descending float order.
# Torch radix-sorts 1-D integer tensors (several times faster than sorting floats), and a radix
# sort is stable, so equal scores keep the lower flat index first, as the ranking requires.
_KEYS = {  # score dtype -> key dtype, the bits but the sign, the shift leaving the top 16 bits
    torch.float32: (torch.int32, np.int32(0x7FFFFFFF), 16),
    torch.float64: (torch.int64, np.int64(0x7FFFFFFFFFFFFFFF), 48),
}


def _descending_keys(row: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Integer keys whose ascending order is the row's descending order, non-candidates last
    (in this thread's scratch buffer), and the shift that leaves their top 16 bits."""
    from ._greedy import descending_keys

    key_dtype, sign_mask, shift = _KEYS[row.dtype]
    keys = scratch.take("keys", row.numel(), key_dtype)
    largest = sign_mask  # every bit but the sign: the largest key, for non-candidates
    descending_keys(row.numpy(), candidates.numpy(), keys.numpy(), sign_mask, largest)
    return keys, shift


class _Scratch(threading.local):
    """Per-thread buffers for the ranking's keys and sort outputs, reused row after row and layer
    after layer: allocated afresh each time, they piled up in the allocator's free lists (about
    100 MB more peak memory on the ResNet-34 benchmark)."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, count: int, dtype: torch.dtype) -> torch.Tensor:
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < count or buffer.dtype != dtype:
            buffer = self.buffers[name] = torch.empty(count, dtype=dtype)
        return buffer[:count]


scratch = _Scratch()
