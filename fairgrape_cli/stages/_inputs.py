"""What every stage shares: where a model comes from, how images are loaded, the data prepared
for a model, and reading what an artifact records about its inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..io import checkpoints as ckpt
from ..io.artifacts import Artifact, check_fits
from ..io.data import DEFAULT_IMAGE_SIZE, DataSpec, GroupedTable, load_table, resolve_classes
from ..io.images import ImageLoader, default_workers
from ..io.onnx_models import is_onnx_path, runtime_only

log = logging.getLogger("fairgrape")

DEFAULT_PRUNED = "pruned.pt"  # the pruned checkpoint's name, beside its masks
STORED_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelSource:
    """A checkpoint path (or Hugging Face model folder) and how to read it (``--arch``,
    ``--arch-args``, ``--trust-checkpoint``)."""

    path: Path
    arch: str | None = None
    trust_checkpoint: bool = False
    default_arch: str | None = None  # recorded by an artifact; used when the file names none
    arch_args: dict[str, Any] | None = None  # the user's constructor arguments (--arch-args)
    default_arch_args: dict[str, Any] | None = None  # recorded by an artifact, with default_arch

    def load(self, *, weights_for: str | None = None) -> ckpt.Checkpoint:
        """Load the checkpoint; ``weights_for`` names a stage that needs the PyTorch model itself
        (gradients, masks, new weights, tracing): an ONNX file, which only onnxruntime runs, is
        refused for it in one line."""
        if weights_for is not None and is_onnx_path(self.path):
            raise InputError(runtime_only(self.path, weights_for))
        return ckpt.load_checkpoint(
            self.path,
            arch=self.arch,
            default_arch=self.default_arch,
            trust_checkpoint=self.trust_checkpoint,
            arch_args=self.arch_args,
            default_arch_args=self.default_arch_args,
        )

    def recorded_by(self, artifact: Artifact | None) -> ModelSource:
        """This source with the architecture ``artifact`` records as its fallback."""
        return replace(
            self, default_arch=recorded_value(artifact, "arch"), default_arch_args=recorded_value(artifact, "arch_args")
        )


@dataclass(frozen=True)
class Loading:
    """How images are read and batched (shared by every stage that reads data)."""

    image_size: int | None = None
    batch_size: int = 64
    device: str = "auto"
    workers: int | None = None  # None: chosen from the machine and the amount of data
    image_size_from: str = "--image-size"  # where image_size was given, for the line that says it

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InputError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.image_size is not None and self.image_size < 8:
            raise InputError(f"--image-size {self.image_size}: must be at least 8")
        if self.workers is not None and self.workers < 0:
            raise InputError(f"--workers {self.workers}: must be 0 or more")


@dataclass
class PreparedData:
    """A split's rows with their targets, in the model's class order, and the image size."""

    table: GroupedTable
    classes: list[str]  # the model's class names, or its attributes (several binary targets)
    targets: torch.Tensor  # class index per row [N], or 0/1 per attribute [N, A]
    image_size: int

    @property
    def attributes(self) -> list[str] | None:
        """The attributes of a multi-label model, else None."""
        return self.classes if self.table.multi_label else None

    def names(self) -> dict[str, list[str]]:
        """What a checkpoint or artifact records about the targets: ``classes`` or ``attributes``."""
        return {"attributes": self.classes} if self.table.multi_label else {"classes": self.classes}


@dataclass(frozen=True)
class ImageSize:
    """The square side images are resized to, and where it came from (for the line that says it)."""

    pixels: int
    source: str  # "--image-size", "the checkpoint", what an artifact recorded, or "the default"


def chosen_image_size(
    flag: int | None, checkpoint: ckpt.Checkpoint, *, recorded: int | None = None, recorded_by: str = "",
    flag_name: str = "--image-size",
) -> ImageSize:
    """``--image-size`` (``flag_name``: where it was given), else the checkpoint's, else what an
    artifact ``recorded``, else 224; warns when the flag overrides another size the checkpoint
    records (the model was trained at that size: other sizes change what it sees)."""
    if flag:
        if checkpoint.image_size and checkpoint.image_size != flag:
            log.warning(
                "%s %d overrides the %d px that %s records: the model was made for %d px images",
                flag_name, flag, checkpoint.image_size, _shown(checkpoint.path), checkpoint.image_size,
            )  # fmt: skip
        return ImageSize(int(flag), flag_name)
    if checkpoint.image_size:
        return ImageSize(int(checkpoint.image_size), "the checkpoint")
    if recorded:
        return ImageSize(int(recorded), recorded_by or "the artifact")
    return ImageSize(DEFAULT_IMAGE_SIZE, "the default; pass --image-size if the model was made for another size")


def warn_if_images_are_much_smaller(table: GroupedTable, size: ImageSize, *, sample: int = 3) -> None:
    """Warn when the first images are at most half the side they are resized to: small images
    blown up (32 px photos read at 224) are not what a model trained on them saw."""
    from PIL import Image

    sides = []
    for path in table.files[:sample]:
        try:
            with Image.open(path) as image:  # reads the header only
                sides.append(max(image.size))
        except Exception:  # noqa: BLE001 - an unreadable image is reported where it is decoded
            continue
    if sides and max(sides) * 2 <= size.pixels:
        log.warning(
            "the images are %d px or smaller but are resized to %d px (%s): if the model was trained on "
            "images this small, pass --image-size %d",
            max(sides), size.pixels, size.source.split(";")[0], max(sides),
        )  # fmt: skip


def prepare_data(
    spec: DataSpec,
    checkpoint: ckpt.Checkpoint,
    *,
    image_size: int | None,
    default_split: Sequence[str],
    classes: list[str] | None = None,
    attributes: list[str] | None = None,
    recorded_image_size: int | None = None,
    announce: bool = True,
    image_size_from: str = "--image-size",
) -> PreparedData:
    """The rows of ``spec`` with targets the model can be trained or judged on.

    ``classes`` / ``attributes`` override what the checkpoint records (from an artifact, or the
    training split's for its validation split). A model with attributes reads them as its targets
    when ``--target`` names none. The image size is ``image_size`` (the flag), else the
    checkpoint's, else ``recorded_image_size`` (an artifact's), else 224; with ``announce`` a
    line says which and where it came from (a second split of the same stage says nothing).
    """
    attributes = attributes if attributes is not None else checkpoint.attributes
    if attributes and not spec.target:
        spec = replace(spec, target=",".join(attributes))
    table = load_table(spec, default_split=default_split, multi_label=True if attributes else None)
    for note in table.notes:
        log.info("%s", note)
    for warning in table.warnings:
        log.warning("%s", warning)
    known = attributes if table.multi_label else (classes if classes is not None else checkpoint.classes)
    chosen_classes, targets = resolve_classes(
        table, num_classes=checkpoint.num_classes, checkpoint_classes=known, model_name=str(checkpoint.path)
    )
    if not announce and image_size:  # another split of the same stage, at the size already said
        return PreparedData(table, chosen_classes, targets, int(image_size))
    size = chosen_image_size(
        image_size, checkpoint, recorded=recorded_image_size, recorded_by="the masks", flag_name=image_size_from
    )
    log.info("image size %d px (from %s)", size.pixels, size.source)
    warn_if_images_are_much_smaller(table, size)
    return PreparedData(table, chosen_classes, targets, size.pixels)


def image_loader(
    prepared: PreparedData, batches: list[list[int]], loading: Loading, spec: DataSpec, device
) -> ImageLoader:
    """Batches of decoded images of ``prepared``'s rows, on worker processes."""
    workers = loading.workers if loading.workers is not None else default_workers(len(batches))
    return ImageLoader(
        table=prepared.table,
        image_size=prepared.image_size,
        batches=batches,
        workers=workers,
        pin_memory=device.type == "cuda",
        skip_bad_images=spec.skip_bad_images,
    )


def recorded_value(artifact: Artifact | None, key: str) -> Any:
    """What an artifact's metadata records under ``key`` (None without an artifact)."""
    return artifact.metadata.get(key) if artifact is not None else None


def data_spec_from(artifact: Artifact, given: DataSpec | None) -> DataSpec:
    """The data an artifact records, with the flags the user gave taking precedence."""
    given = given or DataSpec(root=None)
    if given.root is not None:
        return replace(given, target=given.target or recorded_value(artifact, "target") or None)
    root = artifact.recorded_path("data")
    if root is None:
        raise InputError(f"{artifact.path} does not record its data folder; pass DATA")
    return replace(
        given,
        root=root,
        target=given.target or recorded_value(artifact, "target") or None,
        labels=given.labels or artifact.recorded_path("labels"),
    )


def warn_if_other_model(artifact: Artifact, checkpoint: ckpt.Checkpoint, what: str) -> None:
    """Warn when ``artifact`` was made from another model than ``checkpoint``."""
    made_from = artifact.metadata.get("model_sha256")
    if not made_from or made_from == checkpoint.sha256:
        return  # (before hashing the artifact: that can take a while for a large file)
    if checkpoint.provenance.get("masks_sha256") == artifact.sha256:
        return  # the checkpoint was fine-tuned under these very masks
    recorded = artifact.recorded_path("model")
    if recorded is not None and _same_file(recorded, checkpoint.path):
        log.warning(
            "%s %s was made from %s, whose contents have changed since (its sha256 differs): "
            "the %s may not fit the model as it is now",
            what, _shown(artifact.path), _shown(checkpoint.path), what,
        )  # fmt: skip
    else:
        log.warning(
            "%s %s was made from %s, not from %s (expected after fine-tuning, suspicious otherwise)",
            what, _shown(artifact.path), _shown(recorded) if recorded else "another model", _shown(checkpoint.path),
        )  # fmt: skip


def _same_file(first: Path, second: Path) -> bool:
    try:
        return first.resolve() == second.resolve() or first.samefile(second)
    except OSError:
        return False


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def covered_layers(
    artifact: Artifact,
    checkpoint: ckpt.Checkpoint,
    what: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    leading_dims: int = 0,
    remedy: str,
) -> dict[str, torch.Tensor]:
    """The prunable weights of ``checkpoint`` that ``artifact`` (importance or masks) is for,
    after refusing an artifact that does not belong to the model (before any work is done).

    Refused: keys or shapes that are not the model's; an ``arch`` other than the model's; a
    file that misses some of the layers it should hold. Those are the layers ``include`` /
    ``exclude`` select when given, else the layers the patterns recorded in the file select
    (every prunable layer for a file that records none, as files written before the patterns
    were recorded), so a file covering a subset is accepted only when the subset was meant.
    ``remedy`` ends the message about missing layers (what the user can do).
    """
    every = ckpt.prunable_parameters(checkpoint.model)
    _refuse_other_arch(artifact, checkpoint, what)
    check_fits(
        artifact.headers, every, source=artifact.path, model_name=str(checkpoint.path),
        leading_dims=leading_dims,
    )  # fmt: skip
    if include or exclude:
        selected = ckpt.prunable_parameters(checkpoint.model, include, exclude)
        which = f"that {_describe_patterns(include, exclude)} select"
    else:
        recorded_include, recorded_exclude = recorded_patterns(artifact)
        if recorded_include or recorded_exclude:
            patterns = _describe_patterns(recorded_include, recorded_exclude)
            which = f"that its recorded {patterns} select"
            try:
                selected = ckpt.prunable_parameters(checkpoint.model, recorded_include, recorded_exclude)
            except InputError as error:
                raise InputError(
                    f"{what} {artifact.path} does not fit {checkpoint.path}: it was made with {patterns}, "
                    f"and in this model {error}"
                ) from error
        else:
            selected, which = every, "of the model"
    missing = [name for name in selected if name not in artifact.headers]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError(
            f"{what} {artifact.path} does not fit {checkpoint.path}: it holds "
            f"{len(selected) - len(missing)} of the {len(selected)} prunable layers {which} "
            f"(it lacks {missing[0]}{more}); was it made for another model? {remedy}"
        )
    return selected


def recorded_patterns(artifact: Artifact | None) -> tuple[list[str], list[str]]:
    """The ``--include``/``--exclude`` patterns an artifact was made with (empty: every layer)."""
    if artifact is None:
        return [], []
    patterns = []
    for key in ("include", "exclude"):
        value = artifact.metadata.get(key) or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InputError(f"{artifact.path}: metadata {key!r} must be a list of layer patterns")
        patterns.append(value)
    return patterns[0], patterns[1]


def _describe_patterns(include: Sequence[str], exclude: Sequence[str]) -> str:
    flags = [f"--include {p!r}" for p in include] + [f"--exclude {p!r}" for p in exclude]
    return " ".join(flags)


def same_arch(first: str, second: str) -> bool:
    """Whether two architecture names build the same model: a moved name (io/architectures'
    current_arch_name) and ``torchvision.models:NAME`` for the builder ``NAME`` count as the same."""
    from ..io.architectures import canonical

    return canonical(first) == canonical(second)


def _refuse_other_arch(artifact: Artifact, checkpoint: ckpt.Checkpoint, what: str) -> None:
    """An artifact made for another architecture (recorded ``arch``) does not fit, even when its
    layer names and shapes happen to (resnet18's are a subset of resnet34's). Only compared when
    both sides name one: TorchScript and whole pickled models do not."""
    recorded = artifact.metadata.get("arch")
    if not isinstance(recorded, str) or not recorded or not checkpoint.arch:
        return
    if not same_arch(recorded, checkpoint.arch):
        raise InputError(
            f"{what} {artifact.path} does not fit {checkpoint.path}: it was made for a {recorded} "
            f"model, and {checkpoint.path.name} is a {checkpoint.arch}"
        )


def int_or_none(value: Any) -> int | None:
    """An int from metadata text, or None."""
    return int(value) if value not in (None, "") else None
