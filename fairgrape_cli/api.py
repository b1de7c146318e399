"""fairgrape's Python API: the commands as functions, for a training script or a notebook.

Every function takes keyword arguments only, reads and writes the same files as its command
(docs/design.md holds their formats) and returns a typed result. Nothing is taken from the
current folder: each input and output file is named (relative paths are the caller's, as
with ``open``). Progress is silent unless a ``progress`` sink (``rich.progress.Progress``, or
anything with its ``add_task``/``advance``/``update``) is given.

Common parameters
-----------------
data : str or Path
    The image folder (a ``labels.csv`` manifest, an ImageFolder with ``groups.csv``, or FairFace,
    UTKFace, CelebA as downloaded).
groups : str
    The group column; ``"race,gender"`` for intersectional groups.
target, split, labels : str, optional
    The class column (default ``label``; several binary attribute columns, or ``"all"``); the
    rows of this split (each function's default is its command's); a manifest to use instead
    of ``DATA/labels.csv``.
skip_bad_images : bool
    Count and leave out images that cannot be read instead of stopping.
min_group_size : int
    Leave out groups with fewer images than this.
batch_size, image_size, device, workers
    Images per batch; the square side images are resized to (default: the checkpoint's, else
    224); ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``; image-decoding processes.
arch, arch_args, trust_checkpoint
    The architecture of a plain state dict (a torchvision name, ``timm:NAME``, ``hf:CLASS`` or
    ``module.path:callable``) and its constructor arguments (``{"img_size": 32}``); allow a whole
    pickled module (this runs its code).
seed : int
    The random seed.
progress : ProgressSink, optional
    Where progress goes (nothing by default).

Errors the caller can fix raise ``fairgrape_cli.errors.InputError`` (one line naming the file,
row or flag); a written file is whole or absent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import stages
from ._progress import ProgressSink
from .flows.pipeline import RunResult, run_schedule
from .io.data import DataSpec
from .io.reports import Report
from .method.distillation import Distillation
from .method.kept_epoch import KeptEpoch
from .method.metrics import Bootstrap
from .method.objectives import ObjectiveOptions
from .stages import (
    DataPruneSummary,
    ExportSummary,
    FinetuneSummary,
    PruneSummary,
    QuantizeSummary,
    ReportResult,
    ScoreSummary,
)

__all__ = [
    "score", "prune", "finetune", "report", "run", "data_prune", "export", "quantize",
    "ScoreSummary", "PruneSummary", "FinetuneSummary", "ReportResult", "Report", "RunResult",
    "DataPruneSummary", "ExportSummary", "QuantizeSummary", "ObjectiveOptions",
]  # fmt: skip

PathLike = str | Path


def _path(value: PathLike | None) -> Path | None:
    return Path(value) if value is not None else None


def _model(
    path: PathLike | None, arch: str | None, trust_checkpoint: bool, arch_args: Mapping[str, Any] | None = None
) -> stages.ModelSource | None:
    if path is None:
        return None
    from .io.architectures import check_arch_args

    checked = check_arch_args(dict(arch_args), source="arch_args") if arch_args is not None else None
    return stages.ModelSource(Path(path), arch, trust_checkpoint, arch_args=checked)


def _data(root: PathLike | None, **columns) -> DataSpec:
    return DataSpec(root=_path(root), labels=_path(columns.pop("labels", None)), **columns)


def score(
    *, model: PathLike, data: PathLike, groups: str, output: PathLike, target: str | None = None,
    split: str | None = None, labels: PathLike | None = None, masks: PathLike | None = None,
    max_batches: int | None = None, samples_per_group: int | None = None, min_group_size: int = 1,
    include: Sequence[str] = (), exclude: Sequence[str] = (), dtype: str = "float32", batch_size: int = 64,
    image_size: int | None = None, skip_bad_images: bool = False, device: str = "auto", workers: int | None = None,
    arch: str | None = None,
    arch_args: Mapping[str, Any] | None = None, trust_checkpoint: bool = False,
    seed: int = 0, progress: ProgressSink | None = None,
) -> ScoreSummary:  # fmt: skip
    """Score every prunable weight's importance for each group (``fairgrape score``).

    Parameters
    ----------
    model : str or Path
        The checkpoint to score.
    output : str or Path
        The importance file to write (``.safetensors``).
    masks : str or Path, optional
        Score under these masks (default: the masks the model names, if any).
    max_batches, samples_per_group : int, optional
        At most this many batches per group; a seeded subset of this many images per group.
    include, exclude : sequence of str
        Glob patterns on the prunable layers' names.
    dtype : str
        ``float32``, ``float16`` (scaled per layer) or ``bfloat16``.
    data, groups, target, split, labels, min_group_size, batch_size, image_size, skip_bad_images,
    device, workers, arch, arch_args, trust_checkpoint, seed, progress
        See "Common parameters" (the split defaults to ``train``).

    Returns
    -------
    ScoreSummary
        The file written, the groups and the images and batches scored per group.
    """
    return stages.score(
        model=_model(model, arch, trust_checkpoint, arch_args), output=Path(output), masks=_path(masks),
        data=_data(data, target=target, groups=groups, split=split, labels=labels,
                   skip_bad_images=skip_bad_images, min_group_size=min_group_size),
        loading=stages.Loading(image_size, batch_size, device, workers), max_batches=max_batches,
        samples_per_group=samples_per_group, include=include, exclude=exclude, dtype=dtype, seed=seed,
        progress=progress,
    )  # fmt: skip


def prune(
    *, rate: float, output: PathLike, model: PathLike | None = None, importance: PathLike | None = None,
    method: str = "fairgrape", scope: str = "layer", min_layer_density: float = 0.01, granularity: str = "weight",
    masks: PathLike | None = None, model_output: PathLike | None = None, include: Sequence[str] = (),
    exclude: Sequence[str] = (), arch: str | None = None,
    arch_args: Mapping[str, Any] | None = None, trust_checkpoint: bool = False, seed: int = 0,
    progress: ProgressSink | None = None,
) -> PruneSummary:  # fmt: skip
    """Choose the weights (or channels) to keep, with FairGRAPE or a baseline (``fairgrape prune``).

    Parameters
    ----------
    rate : float
        Fraction of each layer's weights (or of the channels) pruned in total, in [0, 1).
    output : str or Path
        The masks file to write; the pruned checkpoint goes beside it (``pruned.pt``) unless
        ``model_output`` names it.
    model : str or Path, optional
        The checkpoint to prune (default: the one ``importance`` records).
    importance : str or Path, optional
        The importance file ``score`` wrote; needed by ``fairgrape`` and ``taylor``.
    method : str
        ``fairgrape``, ``taylor``, ``magnitude`` or ``random``.
    scope, min_layer_density : str, float
        ``layer`` (the rate per layer) or ``global`` (one pool, each layer keeping at least
        ``min_layer_density``).
    granularity : str
        ``weight`` (masks) or ``channel`` (whole coupled channel groups removed: a smaller model).
    masks : str or Path, optional
        Masks already applied; their pruned weights stay pruned.
    include, exclude, arch, arch_args, trust_checkpoint, seed, progress
        Layer patterns; see "Common parameters".

    Returns
    -------
    PruneSummary
        The files written, the density kept, each layer's kept and total counts, the model's size.
    """
    return stages.prune(
        rate=rate, output=Path(output), model=_model(model, arch, trust_checkpoint, arch_args),
        importance=_path(importance),
        method=method, scope=scope, min_layer_density=min_layer_density, granularity=granularity,
        masks=_path(masks), model_output=_path(model_output), include=include, exclude=exclude, seed=seed,
        progress=progress,
    )  # fmt: skip


def finetune(
    *, output: PathLike, model: PathLike | None = None, data: PathLike | None = None, masks: PathLike | None = None,
    groups: str | None = None, target: str | None = None, split: str | None = None, labels: PathLike | None = None,
    epochs: int = 3, lr: float = 1e-4, lr_milestones: Sequence[int] = (), lr_gamma: float = 0.1,
    val_split: str | None = None, augment: bool = True, objective: str = "erm",
    objective_options: ObjectiveOptions = ObjectiveOptions(), dense: bool = False, teacher: PathLike | None = None,
    distill_weight: float = 0.0, distill_temperature: float = 4.0, keep_epoch: str = "auto",
    keep_within: float = 0.01,
    batch_size: int = 64, image_size: int | None = None, skip_bad_images: bool = False, device: str = "auto",
    workers: int | None = None, precision: str = "fp32", arch: str | None = None,
    arch_args: Mapping[str, Any] | None = None, trust_checkpoint: bool = False,
    seed: int = 0, progress: ProgressSink | None = None,
) -> FinetuneSummary:  # fmt: skip
    """Fine-tune a pruned model with its masked weights held at exactly zero (``fairgrape finetune``).

    Parameters
    ----------
    output : str or Path
        The checkpoint to write.
    model, data, masks : str or Path, optional
        The checkpoint, the image folder and the masks (each default: what the others record;
        the masks: those the model names). No masks at all: trained densely, with a warning.
    epochs, lr, lr_milestones, lr_gamma : int, float, sequence of int, float
        Adam's schedule: the rate is multiplied by ``lr_gamma`` after each milestone epoch.
    val_split, keep_epoch, keep_within : str, str, float
        The split that picks the kept epoch (``"none"``: the last), and the rule that picks it.
    objective, objective_options : str, ObjectiveOptions
        ``erm``, ``balanced``, ``group-dro`` or ``constrained``, and their knobs.
    dense : bool
        Train ``model`` on ``data`` without masks.
    teacher, distill_weight, distill_temperature : str or Path, float, float
        The dense model to distill from (default: the one the masks were pruned from).
    augment, precision : bool, str
        Random horizontal flips; ``fp32`` or ``bf16`` (CUDA).
    groups, target, split, labels, batch_size, image_size, skip_bad_images, device, workers, arch,
    arch_args, trust_checkpoint, seed, progress
        See "Common parameters" (the split defaults to ``train``).

    Returns
    -------
    FinetuneSummary
        The file written, each epoch's numbers, the kept epoch, the density.
    """
    return stages.finetune(
        output=Path(output), model=_model(model, arch, trust_checkpoint, arch_args), masks=_path(masks), dense=dense,
        data=_data(data, target=target, groups=groups, split=split, labels=labels, skip_bad_images=skip_bad_images),
        loading=stages.Loading(image_size, batch_size, device, workers), epochs=epochs, lr=lr,
        lr_milestones=tuple(lr_milestones), lr_gamma=lr_gamma, val_split=val_split, augment=augment,
        objective=objective, objective_options=objective_options, teacher=_model(teacher, arch, trust_checkpoint,
        arch_args),
        distillation=Distillation(distill_weight, distill_temperature), kept_epoch=KeptEpoch(keep_epoch, keep_within),
        seed=seed, precision=precision, progress=progress,
    )  # fmt: skip


def report(
    *, model: PathLike, data: PathLike, groups: str, baseline: PathLike | None = None, fail_if: Sequence[str] = (),
    json_output: PathLike | None = None, html_output: PathLike | None = None, exemplars: PathLike | None = None,
    model_card: PathLike | None = None, intervals: str = "score", bootstrap: int = 1000, target: str | None = None, split: str | None = None, labels: PathLike | None = None, min_group_size: int = 1,
    batch_size: int = 64, image_size: int | None = None, skip_bad_images: bool = False, device: str = "auto",
    workers: int | None = None, precision: str = "fp32", arch: str | None = None,
    arch_args: Mapping[str, Any] | None = None, trust_checkpoint: bool = False,
    seed: int = 0, progress: ProgressSink | None = None,
) -> ReportResult:  # fmt: skip
    """Per-group accuracy, drops against a baseline, disparity and CI conditions (``fairgrape report``).

    Parameters
    ----------
    model : str or Path
        The checkpoint to judge.
    baseline : str or Path, optional
        The dense model each group's accuracy drop is measured against.
    fail_if : sequence of str
        Conditions such as ``"drop_gap>0.05"`` or ``"drop_gap.hi>0.05"`` (an end of its 95%
        interval); the result lists those that hold, and ``checks`` what each measured.
    json_output, html_output : str or Path, optional
        Also write the report as JSON (report.json) or as a self-contained HTML page.
    exemplars : str or Path, optional
        With a baseline: every flipped prediction as CSV, the baseline's most confident first.
    model_card : str or Path, optional
        The fairness section of a Hugging Face model card (Markdown with its YAML header).
    intervals : str
        ``score`` (Wilson, MOVER, Sidak; coverage measured by benchmarks/intervals.py) or
        ``bootstrap`` (percentile, ``bootstrap`` resamples seeded by ``seed``).
    bootstrap : int
        Resamples for ``intervals="bootstrap"``; 0: no intervals.
    precision : str
        ``fp32`` or ``bf16`` (CUDA).
    data, groups, target, split, labels, min_group_size, batch_size, image_size, skip_bad_images,
    device, workers, arch, arch_args, trust_checkpoint, seed, progress
        See "Common parameters" (the split defaults to ``test``, else ``val``).

    Returns
    -------
    ReportResult
        ``report`` (an ``io.reports.Report``: ``report.disparity.drop_gap``,
        ``report.groups[0].accuracy``...), the conditions that hold, the images skipped.
    """
    return stages.report(
        model=_model(model, arch, trust_checkpoint, arch_args), baseline=_model(baseline, arch, trust_checkpoint,
        arch_args),
        data=_data(data, target=target, groups=groups, split=split, labels=labels,
                   skip_bad_images=skip_bad_images, min_group_size=min_group_size),
        loading=stages.Loading(image_size, batch_size, device, workers), fail_if=tuple(fail_if),
        bootstrap=Bootstrap(resamples=bootstrap, seed=seed, method=intervals), json_output=_path(json_output),
        html_output=_path(html_output), exemplars_output=_path(exemplars), model_card_output=_path(model_card),
        precision=precision, progress=progress,
    )  # fmt: skip


def run(
    *, config: PathLike, overrides: Sequence[str] = (), keep_artifacts: str | None = None,
    track: str | None = None, progress: ProgressSink | None = None,
) -> RunResult:  # fmt: skip
    """Run or resume an iterative pruning schedule from a YAML config (``fairgrape run``).

    Parameters
    ----------
    config : str or Path
        The run config (docs/design.md, "Run config keys"); its relative paths are relative to it.
    overrides : sequence of str
        ``KEY=VALUE`` settings applied on top, e.g. ``"method=magnitude"``, ``"finetune.epochs=5"``.
    keep_artifacts : str, optional
        ``last`` or ``all`` (default: the config's).
    track : str, optional
        An experiment tracker to log to (``"mlflow"``; the ``mlflow`` extra).
    progress : ProgressSink, optional
        Where progress goes.

    Returns
    -------
    RunResult
        The output folder, the final ``report`` (with its history), the stages that ran and
        those that were up to date.
    """
    from .flows.config import load_config

    settings = load_config(config, overrides=overrides)
    if keep_artifacts is not None:
        settings.settings["keep_artifacts"] = keep_artifacts
    return run_schedule(settings, progress=progress, track=track)


def data_prune(
    *, model: PathLike, data: PathLike, keep: float, output: PathLike | None = None, by: str = "target",
    groups: str | None = None, quota: str = "drop", within: str = "random", min_quota: float = 0.0,
    val_split: str | None = None, json_output: PathLike | None = None, target: str | None = None,
    split: str | None = None, labels: PathLike | None = None, batch_size: int = 64, image_size: int | None = None,
    skip_bad_images: bool = False, device: str = "auto", workers: int | None = None, arch: str | None = None,
    arch_args: Mapping[str, Any] | None = None, trust_checkpoint: bool = False, seed: int = 0,
    progress: ProgressSink | None = None,
) -> DataPruneSummary:  # fmt: skip
    """A smaller training manifest with fair per-unit quotas, DRoP (``fairgrape data-prune``).

    Parameters
    ----------
    model : str or Path
        The query model: its validation recall sets the quotas.
    keep : float
        The fraction of the training rows kept, in (0, 1].
    output : str or Path, optional
        The manifest to write (default: DATA's manifest name with ``-pruned``, beside it); its
        plan goes beside it (``.plan.json``).
    by, quota, within, min_quota : str, str, str, float
        The units that get quotas (``target``, ``group``, ``both``), the quota rule (``drop``,
        ``uniform``), the rows kept inside a unit (``random``, ``el2n``), the floor of every unit.
    val_split, json_output : str, str or Path, optional
        The split recall is measured on (default ``val``); also write the plan there.
    data, groups, target, split, labels, batch_size, image_size, skip_bad_images, device, workers,
    arch, arch_args, trust_checkpoint, seed, progress
        See "Common parameters" (the split pruned defaults to ``train``).

    Returns
    -------
    DataPruneSummary
        The manifest and plan written, and the plan.
    """
    return stages.data_prune(
        model=_model(model, arch, trust_checkpoint, arch_args), keep=keep, by=by, quota=quota, within=within,
        data=_data(data, target=target, groups=groups, split=split, labels=labels, skip_bad_images=skip_bad_images),
        min_quota=min_quota, val_split=val_split, output=_path(output), json_output=_path(json_output),
        loading=stages.Loading(image_size, batch_size, device, workers), seed=seed, progress=progress,
    )  # fmt: skip


def export(
    *, model: PathLike, output: PathLike, format: str | None = None, values: str = "float32",
    data: PathLike | None = None, labels: PathLike | None = None, image_size: int | None = None,
    batch_size: int = 8, arch: str | None = None,
    arch_args: Mapping[str, Any] | None = None, trust_checkpoint: bool = False, seed: int = 0,
) -> ExportSummary:  # fmt: skip
    """Write a checkpoint as a sparse safetensors file, ONNX or TorchScript, checked (``fairgrape export``).

    Parameters
    ----------
    model : str or Path
        The checkpoint to export.
    output : str or Path
        The file to write; its suffix picks the format unless ``format`` says.
    format : str, optional
        ``sparse``, ``onnx`` or ``torchscript``.
    values : str
        ``sparse``: kept values as ``float32`` (exact) or ``float16``.
    data, labels : str or Path, optional
        Check the export on the first ``batch_size`` images of this folder (default: random input).
    image_size, batch_size, arch, arch_args, trust_checkpoint, seed
        See "Common parameters".

    Returns
    -------
    ExportSummary
        The file written, its size against the input's, and the check's verdict.
    """
    return stages.export(
        model=_model(model, arch, trust_checkpoint, arch_args), output=Path(output), format=format, values=values,
        data=_path(data), labels=_path(labels), image_size=image_size, batch_size=batch_size, seed=seed,
    )  # fmt: skip


def quantize(
    *, model: PathLike, data: PathLike, groups: str, output: PathLike, max_group_drop: float | None = None,
    calibration: str = "minmax", calibration_split: str | None = None, calibration_size: int = 256,
    split: str | None = None, target: str | None = None, labels: PathLike | None = None,
    min_group_size: int = 1, skip_bad_images: bool = False, batch_size: int = 64, image_size: int | None = None,
    workers: int | None = None, arch: str | None = None, arch_args: Mapping[str, Any] | None = None,
    trust_checkpoint: bool = False, seed: int = 0, progress: ProgressSink | None = None,
) -> QuantizeSummary:  # fmt: skip
    """Quantize a checkpoint or fp32 ONNX file to int8 ONNX, gated per group (``fairgrape quantize``).

    Needs ``pip install 'fairgrape[onnx]'``. Runs on the CPU (onnxruntime).

    Parameters
    ----------
    model : str or Path
        A checkpoint (any format fairgrape reads) or an fp32 ``.onnx`` from ``export``.
    output : str or Path
        The ``.onnx`` file to write.
    max_group_drop : float, optional
        The largest accuracy drop any group may take against the float model (a fraction): weight
        layers go back to float, the most harmful first, until every group is within it; when
        nothing is left to return, ``QuantizationFailed`` is raised and nothing is written.
        Default: no bound, every layer int8.
    calibration : str
        How activation ranges are set: ``minmax``, ``entropy`` or ``percentile``.
    calibration_split, calibration_size : str, int
        The split the calibration images come from (default ``train``, else every row) and how
        many, the same number from every group.
    split : str, optional
        The split each group's accuracy is checked on (default ``val``, else ``test``).
    data, groups, target, labels, min_group_size, skip_bad_images, batch_size, image_size, workers,
    arch, arch_args, trust_checkpoint, seed, progress
        See "Common parameters".

    Returns
    -------
    QuantizeSummary
        The file written, its size against the fp32 ONNX model's, each group's accuracy in float
        and in int8 and its drop, and the layers left in float.
    """
    return stages.quantize(
        model=_model(model, arch, trust_checkpoint, arch_args), output=Path(output), max_group_drop=max_group_drop,
        data=_data(data, target=target, groups=groups, split=split, labels=labels, skip_bad_images=skip_bad_images,
                   min_group_size=min_group_size),
        calibration=calibration, calibration_split=calibration_split, calibration_size=calibration_size,
        loading=stages.Loading(image_size, batch_size, "cpu", workers), seed=seed, progress=progress,
    )  # fmt: skip
