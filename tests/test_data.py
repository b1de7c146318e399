"""Dataset layouts, column choices, class indices and group names."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fairgrape_cli.errors import InputError
from fairgrape_cli.io.data import DataSpec, load_table, resolve_classes
from fairgrape_cli.method.batches import group_pure_batches


def _image(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def _manifest(root: Path, header, rows, name="labels.csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for row in rows:
        _image(root / row[0])
    with open(root / name, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return root


def test_manifest_split_target_groups(biased_data):
    table = load_table(DataSpec(root=biased_data, groups="group", split="test"))
    assert table.layout == "manifest" and table.split == "test" and table.target == "label"
    assert table.group_names == ["majority", "minority"] and len(table) == 32
    assert table.dataset_target_values == ["no", "yes"]


def test_default_split_prefers_given_order(biased_data):
    assert load_table(DataSpec(root=biased_data, groups="group"), default_split=("test", "val")).split == "test"
    assert load_table(DataSpec(root=biased_data, groups="group"), default_split=("train",)).split == "train"
    with pytest.raises(InputError, match="no rows in that split; the data has test, train, val"):
        load_table(DataSpec(root=biased_data, groups="group", split="holdout"))


def test_intersectional_groups_and_numeric_sorting(tmp_path):
    rows = [
        (f"i{i}.png", str(label), race, sex)
        for i, (label, race, sex) in enumerate(
            [(10, "b", "m"), (2, "a", "f"), (2, "b", "f"), (10, "a", "m"), (2, "a", "m")]
        )
    ]
    root = _manifest(tmp_path / "d", ["path", "label", "race", "sex"], rows)
    table = load_table(DataSpec(root=root, groups="race,sex"))
    assert table.group_names == ["a/f", "a/m", "b/f", "b/m"]
    assert table.attribute == "race,sex"
    assert table.dataset_target_values == ["2", "10"]  # numbers in numeric order
    classes, targets = resolve_classes(table, num_classes=2, checkpoint_classes=None, model_name="m")
    assert classes == ["2", "10"] and targets.tolist() == [1, 0, 0, 1, 0]


def test_checkpoint_classes_decide_order_and_unknown_values_are_refused(tmp_path):
    root = _manifest(tmp_path / "d", ["file", "label", "g"], [("a.png", "cat", "x"), ("b.png", "dog", "y")])
    table = load_table(DataSpec(root=root, groups="g"))
    classes, targets = resolve_classes(table, num_classes=3, checkpoint_classes=["dog", "bird", "cat"], model_name="m")
    assert targets.tolist() == [2, 0]
    with pytest.raises(InputError, match="also has cat"):
        resolve_classes(table, num_classes=2, checkpoint_classes=["dog", "bird"], model_name="m")
    with pytest.raises(InputError, match="predicts 3 classes, but column 'label' has 2"):
        resolve_classes(table, num_classes=3, checkpoint_classes=None, model_name="m")


def test_integer_labels_are_class_indices(tmp_path):
    root = _manifest(tmp_path / "d", ["path", "label", "g"], [("a.png", "0", "x"), ("b.png", "3", "y")])
    table = load_table(DataSpec(root=root, groups="g"))
    classes, targets = resolve_classes(table, num_classes=5, checkpoint_classes=None, model_name="m")
    assert classes == ["0", "1", "2", "3", "4"] and targets.tolist() == [0, 3]


def test_imagefolder_with_groups_csv(tmp_path):
    root = tmp_path / "folder"
    for name, cls in [("a.png", "cat"), ("b.png", "dog"), ("c.png", "dog")]:
        _image(root / cls / name)
    with open(root / "groups.csv", "w", encoding="utf-8") as handle:
        handle.write("path,skin\ncat/a.png,dark\ndog/b.png,light\ndog/c.png,dark\n")
    table = load_table(DataSpec(root=root, groups="skin"))
    assert table.layout == "imagefolder" and table.target == "label"
    assert table.target_values == ["cat", "dog", "dog"]
    assert table.group_names == ["dark", "light"] and table.group_index.tolist() == [0, 1, 0]


def _imagefolder(root: Path, listed: str) -> Path:
    for name, cls in [("a.png", "cat"), ("b.png", "dog"), ("c.png", "dog")]:
        _image(root / cls / name)
    (root / "groups.csv").write_text("path,skin\n" + listed, encoding="utf-8")
    return root


def test_a_missing_imagefolder_image_is_named_and_skipped_with_the_flag(tmp_path):
    root = _imagefolder(tmp_path / "folder", "cat/a.png,dark\ncat/gone.png,light\ndog/b.png,light\ndog/c.png,dark\n")
    with pytest.raises(InputError, match=r"groups.csv row 3: image .*gone.png does not exist; pass --skip-bad-images"):
        load_table(DataSpec(root=root, groups="skin"))
    table = load_table(DataSpec(root=root, groups="skin", skip_bad_images=True))
    assert table.target_values == ["cat", "dog", "dog"] and table.skipped == {"missing image": 1}


def test_a_path_outside_the_class_folders_says_what_is_wrong(tmp_path):
    root = _imagefolder(tmp_path / "folder", "cat/a.png,dark\nbird/x.png,light\n")
    with pytest.raises(InputError, match=r"row 3: bird/x.png is not an image inside a class folder .*does not exist"):
        load_table(DataSpec(root=root, groups="skin"))


def test_images_without_a_groups_row_are_left_out_with_a_warning(tmp_path, caplog, monkeypatch):
    import logging

    from fairgrape_cli.stages._inputs import prepare_data

    monkeypatch.setattr(logging.getLogger("fairgrape"), "propagate", True)  # the CLI turns it off

    root = _imagefolder(tmp_path / "folder", "cat/a.png,dark\ndog/b.png,light\n")
    table = load_table(DataSpec(root=root, groups="skin"))
    assert len(table) == 2
    assert table.warnings == [
        "1 image(s) in class folders have no row in groups.csv and are left out (first: dog/c.png); "
        "add rows for them to use them"
    ]

    class Checkpoint:  # what prepare_data reads of a checkpoint
        attributes, classes, num_classes, path, image_size = None, ["cat", "dog"], 2, Path("m.pt"), 8

    with caplog.at_level("WARNING", logger="fairgrape"):
        prepare_data(DataSpec(root=root, groups="skin"), Checkpoint(), image_size=None, default_split=())
    assert any("have no row in groups.csv" in r.message and r.levelname == "WARNING" for r in caplog.records)


def test_group_pure_batches_keep_order_and_cap():
    group_index = np.array([0, 1, 0, 0, 1, 0, 0])
    batches = group_pure_batches(group_index, 2, batch_size=2)
    assert batches == [(0, [0, 2]), (0, [3, 5]), (0, [6]), (1, [1, 4])]
    assert group_pure_batches(group_index, 2, batch_size=2, max_batches=1) == [(0, [0, 2]), (1, [1, 4])]
    balanced = group_pure_batches(group_index, 2, batch_size=10, samples_per_group=2, seed=0)
    assert [len(rows) for _, rows in balanced] == [2, 2]


@pytest.mark.parametrize(
    "content,message",
    [
        (b"path,label,g\na.png,x,\n", "labels.csv row 2: empty value in column 'g'"),
        (b"path,label,g\na.png,x,1\na.png,y,2\n", "listed twice"),
        (b"path,label\xff,g\na.png,x,1\n", "not UTF-8"),
        (b"path,label,g\na.png,x\n", "row 2: 2 fields, but the header has 3"),
        (b"label,g\nx,1\n", "no 'path' column"),
        (b"path,label,g\nmissing.png,x,1\n", "labels.csv row 2: image .*missing.png does not exist"),
    ],
)
def test_bad_manifests_name_the_row(tmp_path, content, message):
    root = tmp_path / "d"
    _image(root / "a.png")
    (root / "labels.csv").write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_table(DataSpec(root=root, groups="g"))


def test_unknown_columns_list_the_available_ones(biased_data):
    with pytest.raises(InputError, match="no column 'race'.*columns: group, label"):
        load_table(DataSpec(root=biased_data, groups="race"))
    with pytest.raises(InputError, match="--target age"):
        load_table(DataSpec(root=biased_data, groups="group", target="age"))
