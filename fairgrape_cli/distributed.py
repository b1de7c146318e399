"""The torchrun runtime: which process this is, and the few collectives the stages need.

Under ``torchrun`` (the environment holds ``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``, ...) a stage
calls :func:`start` with its device: the process group is created once per process, NCCL for CUDA
tensors on the local rank's GPU with gloo beside it for CPU tensors and small objects (gloo alone
on a machine without CUDA), and :func:`shutdown` tears it down at exit. Without torchrun
:func:`start` returns :data:`SINGLE`, whose collectives do nothing, and ``torch.distributed`` is
never imported; this module imports torch only inside its functions, so the CLI starts fast.

Errors. Every rank reads and checks the same inputs, so a bad input fails on every rank alike;
what fails on one rank only (an unreadable image in its share of the batches, a file another node
cannot see) is caught at the next agreement point (:meth:`Runtime.together`,
:meth:`Runtime.agreed`, :meth:`Runtime.lockstep`): every rank learns of it and raises, rank 0
names the first failing rank's error, and nobody is left waiting in a collective. A region that
agrees must itself hold no collective (a rank that failed early would meet the others in a
different one).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import FairgrapeError, error_summary

if TYPE_CHECKING:
    import torch
    from torch import nn

T = TypeVar("T")


def launched() -> bool:
    """Started by torchrun (or another launcher setting the same variables) with several processes."""
    return _env_int("WORLD_SIZE", 1) > 1


def env_rank() -> int:
    """This process's global rank, from the environment (0 without a launcher)."""
    return _env_int("RANK", 0) if launched() else 0


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that prints and writes."""
    return env_rank() == 0


def local_rank() -> int:
    """This process's rank on its node (0 without torchrun)."""
    return _env_int("LOCAL_RANK", 0) if launched() else 0


def local_world_size() -> int:
    """Processes started on this machine (they share its CPUs and GPUs)."""
    return max(1, _env_int("LOCAL_WORLD_SIZE", 1)) if launched() else 1


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


class PeerFailure(FairgrapeError):
    """Another rank failed at an agreement point; carries its message and exit code."""

    def __init__(self, rank: int, message: str, exit_code: int):
        super().__init__(f"rank {rank}: {message}")
        self.exit_code = exit_code


AGREED = "fairgrape_agreed_across_ranks"  # set on an error every rank knows of: rank 0 reports it


@dataclass(frozen=True)
class Runtime:
    """Rank, world size and the collectives; in one process every collective is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    tensor_devices: tuple[str, ...] = ("cpu",)  # device types the process group reduces directly

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    # ---------------------------------------------------------------------------- collectives

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce ``tensor`` in place (sum over ranks); returns it."""
        if not self.distributed:
            return tensor
        import torch.distributed as dist

        if tensor.device.type in self.tensor_devices:
            dist.all_reduce(tensor)
        else:  # e.g. MPS: no backend reduces it in place; go through the CPU
            staged = tensor.cpu()
            dist.all_reduce(staged)
            tensor.copy_(staged)
        return tensor

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    # ------------------------------------------------------------------------------- training

    def data_parallel(self, model: nn.Module) -> nn.Module:
        """``model`` wrapped in DistributedDataParallel (gradients averaged over ranks); itself
        in one process. Parameters and buffers start as rank 0's."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) on every rank. DDP syncs them at the start of
        each forward pass, so after the last one each rank holds its own update."""
        if not self.distributed:
            return
        import torch.distributed as dist

        for buffer in model.buffers():
            if buffer.device.type in self.tensor_devices:
                dist.broadcast(buffer, src=0)
            else:
                staged = buffer.cpu()
                dist.broadcast(staged, src=0)
                buffer.copy_(staged)

    # ---------------------------------------------------------------------- agreement points

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Run the block on every rank; if it fails on any, it fails on all (no collectives inside)."""
        if not self.distributed:
            yield
            return
        failure = None
        try:
            yield
        except Exception as error:
            failure = error
        self._agree(failure)

    def agreed(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``; an error while producing them (an unreadable image) stops this rank's
        share, and after the last item every rank learns whether any rank failed. For passes
        whose loop body holds no collective (scoring, evaluation)."""
        if not self.distributed:
            yield from items
            return
        failure = None
        try:
            yield from items
        except Exception as error:
            failure = error
        self._agree(failure)

    def lockstep(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items`` in steps every rank takes together (a DDP training loop, whose steps
        must match one for one): each step first agrees that every rank has its item; a failure
        on any rank raises on all, and when one rank runs out every rank stops."""
        if not self.distributed:
            yield from items
            return
        import torch

        iterator = iter(items)
        while True:
            failure, item, exhausted = None, None, False
            try:
                item = next(iterator)
            except StopIteration:
                exhausted = True
            except Exception as error:
                failure = error
            flags = torch.tensor([failure is not None, exhausted], dtype=torch.int64)
            self.sum_(flags)
            if flags[0]:
                self._agree(failure)
            if flags[1]:
                return
            yield item

    def _agree(self, failure: BaseException | None) -> None:
        reports = self.gather(None if failure is None else _describe(failure))
        failed = [(rank, report) for rank, report in enumerate(reports) if report is not None]
        if not failed:
            return
        if failure is not None:
            setattr(failure, AGREED, True)
            raise failure
        rank, (message, exit_code) = failed[0]
        peer = PeerFailure(rank, message, exit_code)
        setattr(peer, AGREED, True)
        raise peer


def _describe(error: BaseException) -> tuple[str, int]:
    if isinstance(error, FairgrapeError):
        return str(error), error.exit_code
    return error_summary(error), 1


def agreed_error(error: BaseException) -> bool:
    """Whether every rank raised ``error`` (or its peer's) at an agreement point."""
    return bool(getattr(error, AGREED, False))


SINGLE = Runtime()
_started: dict[str, Any] = {"runtime": None, "owner": False, "nccl": False}


def start(device: torch.device) -> Runtime:
    """The runtime of this process: :data:`SINGLE` without torchrun; under torchrun the process
    group, created at the first call (``device``: where this rank computes)."""
    if _started["runtime"] is not None:
        return _started["runtime"]
    if not launched():
        return SINGLE
    import torch
    import torch.distributed as dist

    nccl = device.type == "cuda" and dist.is_nccl_available()
    if not dist.is_initialized():
        if nccl:
            torch.cuda.set_device(device)
            dist.init_process_group("cpu:gloo,cuda:nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
        _started["owner"] = True
    runtime = Runtime(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank(),
        tensor_devices=("cpu", "cuda") if nccl else ("cpu",),
    )
    _started.update(runtime=runtime, nccl=nccl)
    return runtime


def current() -> Runtime:
    """The runtime :func:`start` made, else :data:`SINGLE`."""
    return _started["runtime"] or SINGLE


def shutdown(*, after_crash: bool = False) -> None:
    """Tear the process group down (if this module made it). After an error the other ranks did
    not agree on, an NCCL group is left alone: destroying it could wait on a peer's collective."""
    runtime, owner, nccl = _started["runtime"], _started["owner"], _started["nccl"]
    _started.update(runtime=None, owner=False, nccl=False)
    if runtime is None or not owner or (after_crash and nccl):
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
