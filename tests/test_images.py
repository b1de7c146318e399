"""The image pipeline: JPEGs decoded at the size needed, other formats exact, uint8 to the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from fairgrape_cli.io import images
from fairgrape_cli.io.images import Normalizer, default_workers, read_image


def _photo(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=float)
    return np.clip(field + rng.normal(0, 6, size=field.shape), 0, 255).astype(np.uint8)


def _full_decode(path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        resized = image.convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(resized).transpose(2, 0, 1)


@pytest.fixture
def drafts(monkeypatch):
    """The sizes JPEG draft mode was asked for."""
    asked = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size, *rest):
        asked.append(size)
        return original(self, mode, size, *rest)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return asked


def test_a_large_jpeg_is_decoded_at_reduced_scale_and_stays_close(tmp_path, drafts):
    path = tmp_path / "large.jpg"
    Image.fromarray(_photo(448)).save(path, quality=90)
    ours = read_image(path, 224)
    assert ours.dtype == torch.uint8 and ours.shape == (3, 224, 224) and ours.is_contiguous()
    assert drafts == [(224, 224)]
    difference = np.abs(ours.numpy().astype(int) - _full_decode(path, 224).astype(int))
    assert difference.mean() < 3 and np.percentile(difference, 99) <= 10


def test_a_jpeg_less_than_twice_the_side_and_a_png_are_decoded_in_full(tmp_path, drafts):
    small = tmp_path / "small.jpg"
    Image.fromarray(_photo(400)).save(small, quality=90)
    assert np.array_equal(read_image(small, 224).numpy(), _full_decode(small, 224))
    png = tmp_path / "large.png"
    Image.fromarray(_photo(448)).save(png)
    assert np.array_equal(read_image(png, 224).numpy(), _full_decode(png, 224))
    assert drafts == []


def test_grayscale_and_non_square_jpegs_come_back_rgb_at_the_square_size(tmp_path):
    gray = tmp_path / "gray.jpg"
    Image.fromarray(_photo(480)[..., 0]).save(gray, quality=90)
    image = read_image(gray, 120)
    assert image.shape == (3, 120, 120) and torch.equal(image[0], image[1])
    wide = tmp_path / "wide.jpg"
    Image.fromarray(np.concatenate([_photo(256), _photo(256, seed=1)], axis=1)).save(wide, quality=90)
    assert read_image(wide, 64).shape == (3, 64, 64)


def test_default_workers_use_the_cpus_shared_by_the_processes_on_the_machine(monkeypatch):
    monkeypatch.setattr(images, "available_cpus", lambda: 16)
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert default_workers(2) == 0  # too little to decode to pay for starting processes
    assert default_workers(100) == 16
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers(100) == 4
    monkeypatch.setattr(images, "available_cpus", lambda: 256)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_workers(100) == images.MAX_DEFAULT_WORKERS


def test_normalising_channels_last_gives_the_same_numbers_laid_out_nhwc():
    batch = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    plain = Normalizer((0.5, 0.4, 0.3), (0.2, 0.25, 0.3), torch.device("cpu"))(batch)
    nhwc = Normalizer((0.5, 0.4, 0.3), (0.2, 0.25, 0.3), torch.device("cpu"), channels_last=True)(batch)
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and not plain.is_contiguous(
        memory_format=torch.channels_last
    )
    assert torch.equal(plain, nhwc)
