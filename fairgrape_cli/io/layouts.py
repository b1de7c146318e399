"""Dataset layouts, detected in docs/design.md's order: a manifest CSV, an ImageFolder with groups.csv,
then the public face datasets as downloaded (``face_datasets``). A reader returns ``None`` when
the folder is not its layout and raises :class:`InputError` when it is but something is wrong.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .face_datasets import read_celeba, read_fairface, read_utkface
from .tables import IMAGE_SUFFIXES, LayoutReader, RawTable, table_from_csv

IMAGEFOLDER_TARGET = "label"


def read_layout(root: Path, labels: Path | None = None) -> RawTable:
    """Detect the layout of ``root`` (or read ``labels``) and return its rows."""
    if not root.exists():
        raise InputError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise InputError(f"data {root} is not a folder")
    if labels is not None:
        return read_manifest(root, labels)
    for reader in LAYOUTS:
        table = reader(root, None)
        if table is not None:
            return table
    raise InputError(
        f"{root} is not a recognised dataset: expected labels.csv (manifest), class folders with "
        "groups.csv (ImageFolder), or FairFace, UTKFace or CelebA as downloaded"
    )


def read_manifest(root: Path, labels: Path | None = None) -> RawTable | None:
    """``DATA/labels.csv`` (or ``--labels FILE``): a path column and attribute columns."""
    source = labels if labels is not None else root / "labels.csv"
    if labels is None and not source.is_file():
        return None
    if not source.is_file():
        raise InputError(f"labels file {source} does not exist")
    return table_from_csv("manifest", root, source)


def read_imagefolder(root: Path, _labels: Path | None = None) -> RawTable | None:
    """``DATA/<class>/<image>`` with ``DATA/groups.csv`` giving attributes per image path."""
    groups_csv = root / "groups.csv"
    if not groups_csv.is_file():
        return None
    class_dirs = sorted(child for child in root.iterdir() if child.is_dir())
    if not class_dirs:
        raise InputError(f"{root} has groups.csv but no class folders (DATA/<class>/<image>)")
    class_of_file: dict[str, str] = {}
    for class_dir in class_dirs:
        for image in sorted(class_dir.rglob("*")):
            if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
                class_of_file[image.relative_to(root).as_posix()] = class_dir.name
    table = table_from_csv("imagefolder", root, groups_csv)
    if IMAGEFOLDER_TARGET in table.columns:
        raise InputError(
            f"{groups_csv} has a {IMAGEFOLDER_TARGET!r} column, but in the ImageFolder layout the "
            "class is the folder name; rename the column"
        )
    class_names = {class_dir.name for class_dir in class_dirs}
    labels = []
    for position, relative in enumerate(table.paths):
        normalised = Path(relative).as_posix()
        if normalised in class_of_file:
            labels.append(class_of_file[normalised])
            continue
        folder = Path(normalised).parts[0] if len(Path(normalised).parts) > 1 else None
        if folder in class_names and not (root / normalised).exists():
            # a missing image of a class: refused or skipped (--skip-bad-images) with the others
            labels.append(folder)
            continue
        missing = "" if (root / normalised).exists() else " (it does not exist)"
        raise InputError(
            f"{table.where(position)}: {relative} is not an image inside a class folder of {root}"
            f"{missing}; paths in groups.csv are CLASS/IMAGE, relative to {root}"
        )
    listed = {Path(path).as_posix() for path in table.paths}
    unlisted = sorted(set(class_of_file) - listed)
    if unlisted:
        table.warnings.append(
            f"{len(unlisted)} image(s) in class folders have no row in groups.csv and are left out "
            f"(first: {unlisted[0]}); add rows for them to use them"
        )
    table.columns[IMAGEFOLDER_TARGET] = labels
    table.default_target = IMAGEFOLDER_TARGET
    return table


# Detection order follows docs/design.md: manifest, ImageFolder, then the public datasets as downloaded
# (each recognised by its own label files or file names, so their order among themselves is free).
LAYOUTS: list[LayoutReader] = [
    read_manifest, read_imagefolder, read_fairface, read_utkface, read_celeba,
]  # fmt: skip
