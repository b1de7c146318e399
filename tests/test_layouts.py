"""The public face datasets read as they are downloaded (FairFace, UTKFace, CelebA), scored with the
real CLI, with intersectional groups and --min-group-size."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from fairgrape_cli.errors import InputError
from fairgrape_cli.flows.synthetic import TINY_ARCH, TinyCNN
from fairgrape_cli.io.data import DataSpec, load_table, resolve_classes

FAIRFACE_HEADER = ["file", "age", "gender", "race", "service_test"]
FAIRFACE_TRAIN = [
    ("train/1.jpg", "50-59", "Male", "East Asian", "True"),
    ("train/2.jpg", "30-39", "Female", "Indian", "False"),
    ("train/3.jpg", "3-9", "Female", "Black", "False"),
    ("train/4.jpg", "20-29", "Male", "Indian", "True"),
    ("train/5.jpg", "20-29", "Female", "Black", "True"),
    ("train/6.jpg", "more than 70", "Male", "Black", "False"),
    ("train/7.jpg", "10-19", "Male", "East Asian", "True"),
]
FAIRFACE_VAL = [
    ("val/1.jpg", "3-9", "Male", "East Asian", "False"),
    ("val/2.jpg", "50-59", "Female", "Black", "True"),
]
UTKFACE_NAMES = [
    "100_0_0_20170112213500903.jpg.chip.jpg",
    "25_1_0_20170116174525125.jpg.chip.jpg",
    "26_0_1_20170116164536231.jpg.chip.jpg",
    "31_1_1_20170117195338963.jpg.chip.jpg",
    "2_1_1_20161219193003185.jpg.chip.jpg",
    "45_0_3_20170119181108227.jpg.chip.jpg",
    "8_1_4_20170109204310364.jpg.chip.jpg",
]
UTKFACE_MALFORMED = [  # the three files of the real download that lack the race field
    "39_1_20170116174525125.jpg.chip.jpg",
    "61_1_20170109142408075.jpg.chip.jpg",
    "61_1_20170109150557335.jpg.chip.jpg",
]
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def _jpeg(path: Path, seed: int, size=(20, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def _csv(path: Path, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def make_fairface(root: Path, images_under: str = "") -> Path:
    """The label CSVs beside train/ and val/ (or beside the folder the zip unpacks to)."""
    root.mkdir(parents=True)
    for seed, row in enumerate(FAIRFACE_TRAIN + FAIRFACE_VAL):
        _jpeg(root / images_under / row[0], seed)
    _csv(root / "fairface_label_train.csv", FAIRFACE_HEADER, FAIRFACE_TRAIN)
    _csv(root / "fairface_label_val.csv", FAIRFACE_HEADER, FAIRFACE_VAL)
    return root


def make_utkface(root: Path, folder: str = "UTKFace") -> Path:
    for seed, name in enumerate(UTKFACE_NAMES + UTKFACE_MALFORMED):
        _jpeg(root / folder / name, seed)
    return root


def make_celeba(root: Path, count: int = 6) -> Path:
    """Attribute and partition files as shipped (aligned columns, -1/1), img_align_celeba/."""
    rng = np.random.default_rng(3)
    names = [f"{i:06d}.jpg" for i in range(1, count + 1)]
    lines = [str(count), " ".join(CELEBA_ATTRIBUTES) + " "]
    for name in names:
        values = rng.choice([-1, 1], size=len(CELEBA_ATTRIBUTES))
        lines.append(name + "".join(f"{v:3d}" for v in values))
    root.mkdir(parents=True)
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    splits = [0] * (count - 2) + [1, 2]
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{name} {split}\n" for name, split in zip(names, splits)), encoding="utf-8"
    )
    for seed, name in enumerate(names):
        _jpeg(root / "img_align_celeba" / name, seed, size=(178, 218))
    return root


def _checkpoint(path: Path, classes: list[str] | None) -> Path:
    torch.manual_seed(0)
    fields = {"arch": TINY_ARCH, "num_classes": 2, "state_dict": TinyCNN(2).state_dict(), "image_size": 32}
    if classes is not None:
        fields["classes"] = classes
    torch.save(fields, path)
    return path


def _importance_metadata(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


# ------------------------------------------------------------------------------------------ FairFace


def test_fairface_splits_come_from_the_file_names(tmp_path):
    root = make_fairface(tmp_path / "fairface")
    train = load_table(DataSpec(root=root, groups="race"), default_split=("train",))
    assert train.layout == "fairface" and train.split == "train" and len(train) == 7
    assert train.target == "gender"  # FairFace has no 'label' column
    assert train.group_names == ["Black", "East Asian", "Indian"]
    assert train.group_counts() == [3, 2, 2]
    val = load_table(DataSpec(root=root, groups="race", split="val"))
    assert [f.relative_to(root).as_posix() for f in val.files] == ["val/1.jpg", "val/2.jpg"]
    assert val.locations[1] == "fairface_label_val.csv row 3"


def test_fairface_images_in_the_unpacked_subfolder(tmp_path):
    root = make_fairface(tmp_path / "fairface", images_under="fairface-img-margin025-trainval")
    table = load_table(DataSpec(root=root, groups="race"), default_split=("train",))
    assert all(f.is_file() for f in table.files)


def test_fairface_without_a_race_column_is_refused(tmp_path):
    root = make_fairface(tmp_path / "fairface")
    _csv(root / "fairface_label_val.csv", ["file", "age", "gender"], [("val/1.jpg", "3-9", "Male")])
    with pytest.raises(InputError, match="fairface_label_val.csv .*no column.* race"):
        load_table(DataSpec(root=root, groups="gender"))


def test_score_fairface_intersectional(tmp_path, cli):
    root = make_fairface(tmp_path / "fairface")
    model = _checkpoint(tmp_path / "gender.pt", ["Female", "Male"])
    output = tmp_path / "importance.safetensors"
    result = cli("score", model, root, "--groups", "race,gender", "--batch-size", "2", "-o", output)
    assert result.code == 0, result
    meta = _importance_metadata(output)
    groups = json.loads(meta["groups"])
    assert groups == ["Black/Female", "Black/Male", "East Asian/Male", "Indian/Female", "Indian/Male"]
    assert json.loads(meta["samples_per_group"]) == dict(zip(groups, [2, 1, 2, 1, 1]))
    assert meta["attribute"] == "race,gender" and meta["split"] == "train"
    assert re.search(r"Black/Female: 2 images / 1 batch\b", result.err)  # the summary line


def test_min_group_size_drops_and_reports(tmp_path, cli):
    root = make_fairface(tmp_path / "fairface")
    model = _checkpoint(tmp_path / "gender.pt", ["Female", "Male"])
    output = tmp_path / "importance.safetensors"
    result = cli("score", model, root, "--groups", "race,gender", "--min-group-size", "2", "-o", output)
    assert result.code == 0, result
    assert json.loads(_importance_metadata(output)["groups"]) == ["Black/Female", "East Asian/Male"]
    assert "Black/Male (1)" in result.err and "Indian/Female (1)" in result.err
    with safe_open(str(output), framework="pt") as handle:
        assert handle.get_tensor("classifier.weight").shape[0] == 2


# ------------------------------------------------------------------------------------------ UTKFace


def test_utkface_attributes_from_file_names(tmp_path):
    root = make_utkface(tmp_path / "utk")
    table = load_table(DataSpec(root=root, groups="race"))
    assert table.layout == "utkface" and len(table) == len(UTKFACE_NAMES)
    assert table.group_names == ["White", "Black", "Indian", "Others"]  # dataset code order
    assert any("skipped 3 UTKFace image(s)" in warning for warning in table.warnings)
    # the target stays in the dataset's codes, so a model trained on them needs no class names...
    classes, targets = resolve_classes(table, num_classes=2, checkpoint_classes=None, model_name="m")
    assert classes == ["Male", "Female"] and targets.tolist() == [0, 1, 0, 1, 1, 0, 1]
    # ...and one whose classes are the readable names gets them mapped
    _, targets = resolve_classes(table, num_classes=2, checkpoint_classes=["Female", "Male"], model_name="m")
    assert targets.tolist() == [1, 0, 1, 0, 0, 1, 0]


def test_utkface_in_the_data_folder_itself(tmp_path):
    root = make_utkface(tmp_path, folder="crop_part1") / "crop_part1"
    table = load_table(DataSpec(root=root, groups="race,gender"))
    assert table.group_names[0] == "White/Male" and "Others/Female" in table.group_names


def test_score_utkface_with_two_attributes(tmp_path, cli):
    root = make_utkface(tmp_path / "utk")
    output = tmp_path / "importance.safetensors"
    result = cli("score", _checkpoint(tmp_path / "m.pt", None), root, "--groups", "race,gender", "-o", output)
    assert result.code == 0, result
    assert "skipped 3 UTKFace image(s)" in result.err
    meta = _importance_metadata(output)
    assert json.loads(meta["groups"]) == [
        "White/Male", "White/Female", "Black/Male", "Black/Female", "Indian/Male", "Others/Female",
    ]  # fmt: skip
    assert json.loads(meta["classes"]) == ["Male", "Female"]


# ------------------------------------------------------------------------------------------- CelebA


def test_celeba_flags_and_partition(tmp_path):
    root = make_celeba(tmp_path / "celeba")
    table = load_table(DataSpec(root=root, target="Smiling", groups="Male"), default_split=("train",))
    assert table.layout == "celeba" and table.split == "train" and len(table) == 4
    assert set(table.group_names) <= {"0", "1"} and set(table.target_values) <= {"0", "1"}
    assert table.files[0] == root / "img_align_celeba" / "000001.jpg"
    test = load_table(DataSpec(root=root, target="Smiling", groups="Male", split="test"))
    assert [f.name for f in test.files] == ["000006.jpg"]


def test_celeba_kaggle_copy(tmp_path):
    """CSV files and the doubled img_align_celeba/img_align_celeba/ folder of the Kaggle zip."""
    root = tmp_path / "celeba"
    root.mkdir()
    names = ["000001.jpg", "000002.jpg", "000003.jpg"]
    _csv(root / "list_attr_celeba.csv", ["image_id", "Male", "Smiling"],
         [(names[0], "1", "-1"), (names[1], "-1", "1"), (names[2], "-1", "-1")])  # fmt: skip
    _csv(root / "list_eval_partition.csv", ["image_id", "partition"], [(n, "0") for n in names])
    for seed, name in enumerate(names):
        _jpeg(root / "img_align_celeba" / "img_align_celeba" / name, seed)
    table = load_table(DataSpec(root=root, target="Smiling", groups="Male"), default_split=("train",))
    assert table.target_values == ["0", "1", "0"] and table.group_names == ["0", "1"]
    assert all(f.is_file() for f in table.files)


def test_celeba_malformed_line_names_file_and_line(tmp_path):
    root = make_celeba(tmp_path / "celeba")
    path = root / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[4] = " ".join([*lines[4].split()[:-1], "2"])  # the third image's last attribute
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"list_attr_celeba.txt line 5: .* expected -1 or 1"):
        load_table(DataSpec(root=root, target="Smiling", groups="Male"))


def test_score_celeba(tmp_path, cli):
    root = make_celeba(tmp_path / "celeba", count=8)
    output = tmp_path / "importance.safetensors"
    model = _checkpoint(tmp_path / "m.pt", None)
    result = cli("score", model, root, "--target", "Smiling", "--groups", "Male,Young", "-o", output)
    assert result.code == 0, result
    assert _importance_metadata(output)["split"] == "train"
