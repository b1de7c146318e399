"""Images in: decode, resize and batch them (uint8) in loader workers; normalise on the device.

Decoding, not the model, sets the pace of a pass over images on a GPU, so a worker does as little
as it can: a JPEG stored at least twice the side needed is decoded at a reduced scale (PIL's
``draft`` mode, the decoder's own 1/2, 1/4 or 1/8 DCT scaling: a quarter of the pixels or fewer
to decode), images stay uint8 (a quarter of the bytes of float32 to pass between processes and
to the device), and scaling and normalising happen on the device (``Normalizer``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..distributed import local_world_size
from ..errors import InputError, first_line
from .data import GroupedTable


def read_image(path: Path, image_size: int) -> torch.Tensor:
    """RGB, resized to a square with PIL bilinear (as torchvision's Resize), as uint8 CHW.

    A JPEG whose shorter side is at least twice ``image_size`` is decoded at the largest of 1/2,
    1/4 or 1/8 scale that still covers ``image_size`` (then resized as any image). The pixels
    differ slightly from a full decode + resize (benchmarks/loading.py measures by how much);
    PNG and every other format are decoded in full, exactly as before.
    """
    with Image.open(path) as image:
        if image.format == "JPEG" and min(image.size) >= 2 * image_size:
            image.draft("RGB", (image_size, image_size))
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    # one contiguous CHW copy: stacking strided views is a slow, thread-parallel copy per batch
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def thumbnail_data_uri(path: Path, *, size: int = 96) -> str | None:
    """The image as a small JPEG (its longer side ``size`` px at most; a few kB for a face) in a
    ``data:`` URI, for a page that must stay self-contained; None when it cannot be read."""
    import base64
    import io

    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            image = image.convert("RGB")
            image.thumbnail((size, size), Image.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
    except Exception:  # PIL raises many types for broken files; the page shows the path instead
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class ImageFiles(torch.utils.data.Dataset):
    """Images by index; a file that cannot be decoded comes back as its error, not an exception,
    so the main process can name it (errors raised in loader workers lose their type)."""

    def __init__(self, files: Sequence[Path], image_size: int):
        self.files = list(files)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        try:
            return read_image(self.files[index], self.image_size), index, None
        except Exception as error:  # PIL raises many types for broken files
            return None, index, first_line(error)


def _collate(items):
    good = [(image, index) for image, index, error in items if error is None]
    failed = [(index, error) for _, index, error in items if error is not None]
    if good:
        images = torch.stack([image for image, _ in good])
        indices = torch.tensor([index for _, index in good], dtype=torch.long)
    else:
        images, indices = None, torch.empty(0, dtype=torch.long)
    return images, indices, failed


@dataclass
class ImageLoader:
    """Batches of uint8 images with their row indices, from a fixed list of index batches."""

    table: GroupedTable
    image_size: int
    batches: list[list[int]]
    workers: int = 0
    pin_memory: bool = False
    skip_bad_images: bool = False
    bad_images: int = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(
            ImageFiles(self.table.files, self.image_size),
            batch_sampler=self.batches,
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self.pin_memory,
            prefetch_factor=4 if self.workers else None,
        )
        for images, indices, failed in loader:
            if failed:
                self._handle_failures(failed)
            if images is not None:
                yield images, indices

    def __len__(self) -> int:
        return len(self.batches)

    def _handle_failures(self, failed: list[tuple[int, str]]) -> None:
        if not self.skip_bad_images:
            index, error = failed[0]
            raise InputError(
                f"{self.table.locations[index]}: cannot read image {self.table.files[index]} "
                f"({error}); pass --skip-bad-images to leave such images out"
            )
        self.bad_images += len(failed)


MAX_DEFAULT_WORKERS = 32


def available_cpus() -> int:
    """CPUs this process may run on (its affinity: a container's or a job scheduler's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_workers(num_batches: int) -> int:
    """One decoding process per CPU this process may use, shared with the other processes that
    torchrun started on the machine; none when there is too little to decode to pay for
    starting them."""
    if num_batches <= 2:
        return 0
    return max(1, min(MAX_DEFAULT_WORKERS, available_cpus() // local_world_size()))


class Normalizer:
    """uint8 batches -> float, scaled and normalised on the device (the same ops as torchvision's
    ToTensor + Normalize, so the numbers match a torchvision pipeline exactly); ``channels_last``
    lays the batch out NHWC (for a channels_last model), converted while it is still uint8."""

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], device: torch.device, *, channels_last: bool = False
    ):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.device = device
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        batch = batch.float().div_(255)  # keeps the layout
        return batch.sub_(self.mean).div_(self.std)
