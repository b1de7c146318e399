"""Property: whatever a labels.csv contains, reading it ends in data or in a clear InputError."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fairgrape_cli.errors import InputError
from fairgrape_cli.io.data import DataSpec, load_table, resolve_classes

_NAMES = st.sampled_from(["path", "file", "label", "g", "split", "race", "", " path", "label,x", 'q"uote'])
_VALUES = st.one_of(
    st.sampled_from(["a.png", "b.png", "missing.png", "train", "test", "val", "0", "1", "-1", "", "x/../a.png"]),
    st.text(max_size=6),
)


def _check(content: bytes, spec_kwargs: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name in ("a.png", "b.png"):
            Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(root / name)
        (root / "labels.csv").write_bytes(content)
        try:
            table = load_table(DataSpec(root=root, **spec_kwargs), default_split=("train",))
            resolve_classes(table, num_classes=2, checkpoint_classes=None, model_name="m")
        except InputError as error:
            message = str(error)
            assert message and "\n" not in message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=st.binary(max_size=200))
def test_random_bytes_never_crash(content):
    _check(content, {"groups": "g"})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.lists(_NAMES, min_size=0, max_size=5),
    rows=st.lists(st.lists(_VALUES, min_size=0, max_size=6), max_size=6),
    groups=st.sampled_from(["g", "race", "g,race", "label", ",", "g,g"]),
    split=st.sampled_from([None, "train", "test", "nope"]),
)
def test_random_tables_never_crash(header, rows, groups, split):
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    _check(buffer.getvalue().encode("utf-8"), {"groups": groups, "split": split})
