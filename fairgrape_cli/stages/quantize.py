"""The quantize stage: a checkpoint or an fp32 ONNX file -> a static int8 ONNX file, gated per group.

onnxruntime's static quantization does the work (QDQ format, int8 weights per channel, uint8
activations: what onnxruntime's CPU kernels run fastest, VNNI or not). What fairgrape adds:

- activations are calibrated on a sample of the training split holding every group in equal
  measure (``method.quantization.balanced_sample``), with the calibration method a choice;
- the quantized model is measured per group on the validation split against the float model
  (the same file in float, in the same runtime), and with ``max_group_drop`` weight layers go back
  to float, the most harmful first (``method.quantization.control_group_drops``), until every group
  is within the bound; when nothing is left to return, nothing is written and the stage fails
  (exit 1);
- the file records what it came from, the calibration, the layers left in float and the
  per-group accuracies and drops it reached (``fairgrape`` in its metadata_props, under
  ``quantization``), next to the classes, image size and normalisation ``report`` reads.

A checkpoint is first exported to ONNX by the export stage (checked against the checkpoint in
onnxruntime); the graph is then prepared as onnxruntime recommends (shape inference and its basic
graph optimizations, without which most convolutions of a torch export stay in float).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._progress import NoProgress, ProgressSink
from ..errors import FairgrapeError, InputError, first_line
from ..io import checkpoints as ckpt
from ..io import onnx_models
from ..io.data import DataSpec, require_groups
from ..io.files import atomic_output, record_path, refuse_overwriting_inputs, resolve_recorded
from ..io.images import Normalizer
from ..method.batches import sequential_batches
from ..method.metrics import group_accuracies, predict
from ..method.quantization import (
    ControlResult,
    Measurement,
    balanced_sample,
    check_max_group_drop,
    control_group_drops,
    group_drops,
    within_bound,
)
from ._inputs import Loading, ModelSource, PreparedData, image_loader, prepare_data

log = logging.getLogger("fairgrape")

# --calibration -> onnxruntime's CalibrationMethod member
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
DEFAULT_CALIBRATION_SIZE = 256
_CACHE_BYTES = 2 << 30  # control images kept in memory (uint8) between evaluations up to this


class QuantizationFailed(FairgrapeError):
    """No int8 model within the per-group bound: nothing is written, exit 1."""

    exit_code = 1


@dataclass
class QuantizeSummary:
    """What :func:`quantize` wrote and measured: per-group accuracy in float and in int8, the
    layers left in float, the calibration, the file's size against the fp32 ONNX model's."""

    output: Path | None  # None when the bound was not reached (nothing written)
    bytes: int
    float_bytes: int  # the fp32 ONNX model's
    groups: list[str]
    float_accuracy: list[float]  # per group, the float model on the control split
    accuracy: list[float]  # per group, the written model
    drops: list[float]
    control_split: str | None
    layers: list[str]  # every weight layer, graph order
    float_layers: list[str]  # those left in float
    max_group_drop: float | None
    within: bool
    evaluations: int
    calibration: dict[str, Any] = field(default_factory=dict)
    harm: dict[str, float] = field(default_factory=dict)  # layer -> worst drop removed by returning it alone
    seconds: float = 0.0

    @property
    def ratio(self) -> float:
        """The int8 file's bytes over the fp32 ONNX model's."""
        return self.bytes / self.float_bytes if self.float_bytes else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON values (``output`` as text): what a run records of its quantize stage."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        values["output"] = str(self.output) if self.output is not None else None
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QuantizeSummary:
        """The summary :meth:`to_dict` gave."""
        known = {item.name for item in fields(cls)}
        chosen = {key: value for key, value in values.items() if key in known}
        chosen["output"] = Path(chosen["output"]) if chosen.get("output") else None
        return cls(**chosen)


@dataclass(frozen=True)
class QuantizeInputs:
    """Everything quantize works on, checked (no model loaded)."""

    model: ModelSource
    data: DataSpec
    output: Path
    max_group_drop: float | None
    calibration: str
    calibration_split: str | None
    calibration_size: int
    loading: Loading
    seed: int


def default_output(model: Path) -> Path:
    """The file a quantization of ``model`` is written to without ``-o``: its stem with
    ``.int8.onnx`` (``finetuned.int8.onnx``), relative to the current folder."""
    return Path(f"{_stem(Path(model))}.int8.onnx")


def resolve_quantize(
    *,
    model: ModelSource,
    data: DataSpec,
    output: Path,
    max_group_drop: float | None = None,
    calibration: str = "minmax",
    calibration_split: str | None = None,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    loading: Loading = Loading(device="cpu"),
    seed: int = 0,
) -> QuantizeInputs:
    """Check the flags, that onnx and onnxruntime are installed and that the output can be
    written, before loading anything."""
    check_max_group_drop(max_group_drop)
    if calibration not in CALIBRATION_METHODS:
        raise InputError(f"--calibration {calibration}: choose {', '.join(CALIBRATION_METHODS)}")
    if calibration_size < 1:
        raise InputError(f"--calibration-size {calibration_size}: must be at least 1")
    require_groups(data, "quantization is calibrated and checked per group")
    onnx_models.require_onnxruntime("fairgrape quantize")
    onnx_models.require_onnx("fairgrape quantize")
    output = Path(output)
    if not onnx_models.is_onnx_path(output):
        raise InputError(f"-o {output}: fairgrape quantize writes an ONNX file; name it *.onnx")
    refuse_overwriting_inputs([output], [model.path, data.labels])
    _require_writable(output)
    loading = replace(loading, device="cpu")  # onnxruntime's CPU kernels are what int8 is for
    return QuantizeInputs(model, data, output, max_group_drop, calibration, calibration_split, calibration_size,
                          loading, seed)  # fmt: skip


def quantize(
    *,
    model: ModelSource,
    data: DataSpec,
    output: Path,
    max_group_drop: float | None = None,
    calibration: str = "minmax",
    calibration_split: str | None = None,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    loading: Loading = Loading(device="cpu"),
    seed: int = 0,
    progress: ProgressSink | None = None,
) -> QuantizeSummary:
    """Quantize ``model`` to int8 and measure it per group on ``data``'s validation split (or
    ``data.split``); with ``max_group_drop``, return layers to float until every group is within
    it, or raise :class:`QuantizationFailed` (nothing written)."""
    started = time.perf_counter()
    progress = progress or NoProgress()
    inputs = resolve_quantize(
        model=model, data=data, output=output, max_group_drop=max_group_drop, calibration=calibration,
        calibration_split=calibration_split, calibration_size=calibration_size, loading=loading, seed=seed,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fairgrape-quantize-") as scratch_name, _quiet_onnxruntime():
        job = _prepare(inputs, Path(scratch_name), progress)
        result, evaluated = _control(job, inputs, progress)
        summary = _summary(result, job, inputs)
        if inputs.max_group_drop is not None and not result.within:
            raise QuantizationFailed(_failure(summary, inputs.output))
        _write(job, inputs, summary, evaluated[result.final.float_layers])
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class _Job:
    """The float model prepared for quantization, its data, and the quantizer."""

    checkpoint: ckpt.Checkpoint  # the fp32 ONNX model
    float_file: Path
    source: dict[str, Any]  # what it came from (recorded in the int8 file)
    prepared: Path  # the graph after onnxruntime's pre-processing
    layers: list[str]  # the weight layers, graph order
    control: PreparedData
    calibration: PreparedData
    per_group: int
    images: int
    quantizer: _Quantizer
    control_images: _ControlImages
    normalize: Normalizer
    reference: np.ndarray | None = None  # per group, the float model's accuracy on the control split


def _prepare(inputs: QuantizeInputs, scratch: Path, progress: ProgressSink) -> _Job:
    """The fp32 ONNX model, its graph prepared, the control and calibration splits, the
    calibration images (every group in equal measure) and the quantizer."""
    model, data, loading = inputs.model, inputs.data, inputs.loading
    float_file, source = _float_onnx(model, scratch, loading.image_size, inputs.seed, progress)
    checkpoint = ckpt.load_checkpoint(float_file)
    if checkpoint.provenance.get("quantization") or onnx_models.quantized_graph(float_file):
        raise InputError(f"{model.path} is quantized already; quantize the float model it came from")
    control = prepare_data(data, checkpoint, image_size=loading.image_size, default_split=("val", "test"),
                           image_size_from=loading.image_size_from)
    calibration = _calibration_data(data, checkpoint, control, inputs.calibration_split)
    prepared = _prepare_graph(float_file, scratch / "prepared.onnx")
    layers = onnx_models.weight_layers(onnx_models.load_graph(prepared, "quantization"))
    if not layers:
        raise InputError(f"{model.path} has no Conv, Gemm or MatMul layer with constant weights to quantize")
    normalize = Normalizer(*checkpoint.normalization, torch.device("cpu"))
    rows, per_group = balanced_sample(
        calibration.table.group_index, calibration.table.group_names, size=inputs.calibration_size,
        seed=inputs.seed, where=f"calibration split {calibration.table.split or '(all rows)'}",
    )  # fmt: skip
    batches = _load_calibration(calibration, rows, loading, data, normalize, progress)
    quantizer = _Quantizer(
        prepared, scratch, batches, input_name=checkpoint.model.input_name,
        method=inputs.calibration, names={layer.name: layer.node for layer in layers},
    )  # fmt: skip
    return _Job(checkpoint, float_file, source, prepared, [layer.name for layer in layers], control, calibration,
                per_group, len(rows), quantizer, _ControlImages(control, loading, data), normalize)  # fmt: skip


def _control(job: _Job, inputs: QuantizeInputs, progress: ProgressSink) -> tuple[ControlResult, dict]:
    """The float model's per-group accuracy, then the accuracy control (every layer int8 when
    there is no bound); returns its result and the file of every variant measured."""
    control = job.control

    def accuracies(file: Path, what: str) -> np.ndarray:
        runner = onnx_models.read_onnx(file).model
        task = progress.add_task(what, total=len(control.table))
        outcomes = predict([runner], iter(job.control_images), [job.normalize], control.targets,
                           on_batch=lambda n: progress.advance(task, n))[0]  # fmt: skip
        found = group_accuracies(outcomes, control.table.group_index, control.table.group_names)
        return np.array([group.accuracy for group in found])

    evaluated: dict[tuple[str, ...], Path] = {}

    def evaluate(float_layers: tuple[str, ...]) -> np.ndarray:
        file = job.quantizer.write(float_layers)
        evaluated[float_layers] = file
        return accuracies(file, f"int8, {len(float_layers)} layer(s) float" if float_layers else "int8")

    job.reference = accuracies(job.prepared, "float model")
    bound = inputs.max_group_drop if inputs.max_group_drop is not None else 1.0
    result = control_group_drops(layers=job.layers, reference=job.reference, evaluate=evaluate, max_group_drop=bound)
    return result, evaluated


def _write(job: _Job, inputs: QuantizeInputs, summary: QuantizeSummary, chosen: Path) -> None:
    """The chosen variant with its metadata (classes, image size, normalisation, provenance),
    written atomically to the output."""
    # a plain state dict names no classes: the file records those it was checked with (the data's)
    classes = job.checkpoint.classes or (None if job.control.table.multi_label else job.control.classes)
    recorded = _metadata(job.checkpoint, source=job.source, output=inputs.output, summary=summary,
                         data=inputs.data, target=job.control.table.target, classes=classes)  # fmt: skip
    final = onnx_models.load_graph(chosen, "quantization")
    onnx_models.set_metadata(final, recorded)
    with atomic_output(inputs.output) as tmp:
        onnx_models.save_graph(final, tmp)
    summary.output = inputs.output
    summary.bytes = inputs.output.stat().st_size


# ------------------------------------------------------------------------------------ the model


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def _float_onnx(
    model: ModelSource, scratch: Path, image_size: int | None, seed: int, progress: ProgressSink
) -> tuple[Path, dict[str, Any]]:
    """The fp32 ONNX model to quantize and what it came from: MODEL itself when it is ONNX, else
    MODEL exported by the export stage (checked against the checkpoint in onnxruntime)."""
    from .export import export

    if onnx_models.is_onnx_path(model.path):
        found = ckpt.load_checkpoint(model.path)
        recorded = found.provenance.get("source")
        checkpoint = resolve_recorded(recorded, model.path) if isinstance(recorded, str) else None
        return model.path, {"file": model.path, "sha256": found.sha256, "stage": found.provenance.get("stage"),
                            "checkpoint": checkpoint, "masks": _masks(found)}  # fmt: skip
    task = progress.add_task("exporting to ONNX", total=None)
    summary = export(model=model, output=scratch / "float.onnx", format="onnx", image_size=image_size, seed=seed)
    progress.advance(task, 1)
    if summary.check.passed is None:
        log.warning("%s", summary.check.text)
    exported = ckpt.load_checkpoint(summary.output)
    return summary.output, {
        "file": model.path, "sha256": exported.provenance.get("source_sha256"),
        "stage": exported.provenance.get("source_stage"), "checkpoint": model.path,
        "masks": _masks(exported), "export_check": summary.check.text,
    }  # fmt: skip


def _masks(checkpoint: ckpt.Checkpoint) -> tuple[Path, str | None] | None:
    recorded = checkpoint.provenance.get("masks")
    if not isinstance(recorded, str):
        return None
    return resolve_recorded(recorded, checkpoint.path), checkpoint.provenance.get("masks_sha256")


def _prepare_graph(source: Path, prepared: Path) -> Path:
    """onnxruntime's pre-processing for quantization (symbolic shape inference, its basic graph
    optimizations, ONNX shape inference): folds the Identity nodes a torch export leaves in front of
    BatchNorm-folded weights, without which 16 of resnet18's 20 convolutions stay in float after
    quantization. Graphs its symbolic shape inference cannot read are prepared without it."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    for skip_symbolic in (False, True):
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=skip_symbolic)
            return prepared
        except Exception as error:  # noqa: BLE001 - onnxruntime raises many types here
            log.debug("quantization pre-processing (skip_symbolic_shape=%s) failed: %s", skip_symbolic, error)
    log.warning("onnxruntime's pre-processing failed on %s; quantizing the graph as it is", source)
    return source


@contextlib.contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """onnxruntime's quantization logs advice through the root logger and its sessions warn on
    stderr; fairgrape says what matters itself."""
    import onnxruntime

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    onnxruntime.set_default_logger_severity(3)
    try:
        yield
    finally:
        root.setLevel(level)
        onnxruntime.set_default_logger_severity(2)


# ------------------------------------------------------------------------------------- the data


def _calibration_data(
    data: DataSpec, checkpoint: ckpt.Checkpoint, control: PreparedData, split: str | None
) -> PreparedData:
    """The calibration split (the training split by default), with the control split's classes;
    refused when it lacks a group the control split has."""
    spec = replace(data, split=split, min_group_size=1)
    found = prepare_data(
        spec, checkpoint, image_size=control.image_size, default_split=("train",),
        classes=None if control.table.multi_label else control.classes, announce=False,  # the size is said
    )  # fmt: skip
    missing = [name for name in control.table.group_names if name not in found.table.group_names]
    if missing:
        where = f"--calibration-split {found.table.split}" if found.table.split else "the calibration rows"
        raise InputError(
            f"{where} has no images of group {', '.join(missing)} (the {control.table.split or 'control'} split has): "
            "calibrate on a split that holds every group"
        )
    return found


def _load_calibration(
    prepared: PreparedData, rows: list[int], loading: Loading, spec: DataSpec, normalize: Normalizer,
    progress: ProgressSink,
) -> list[np.ndarray]:  # fmt: skip
    batches = [rows[start : start + loading.batch_size] for start in range(0, len(rows), loading.batch_size)]
    loader = image_loader(prepared, batches, loading, spec, torch.device("cpu"))
    task = progress.add_task("calibration images", total=len(rows))
    found = []
    for images, _ in loader:
        found.append(np.ascontiguousarray(normalize(images).numpy()))
        progress.advance(task, len(images))
    return found


class _ControlImages:
    """The control split's uint8 batches, decoded once and kept while they fit in memory."""

    def __init__(self, prepared: PreparedData, loading: Loading, spec: DataSpec):
        batches = sequential_batches(len(prepared.table), loading.batch_size)
        self.loader = image_loader(prepared, batches, loading, spec, torch.device("cpu"))
        size = prepared.image_size
        self.keep = len(prepared.table) * 3 * size * size <= _CACHE_BYTES
        self.cached: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.cached is not None:
            yield from self.cached
            return
        collected = []
        for batch in self.loader:
            if self.keep:
                collected.append(batch)
            yield batch
        if self.keep:
            self.cached = collected


# ------------------------------------------------------------------------------- the quantizer


class _Quantizer:
    """onnxruntime's ``quantize_static`` on one prepared graph, with some layers kept in float.

    Activation ranges are calibrated once (onnxruntime's calibration cache, where its version has
    one; earlier versions calibrate again for every variant, which gives the same ranges)."""

    def __init__(self, prepared: Path, scratch: Path, batches: list[np.ndarray], *, input_name: str,
                 method: str, names: dict[str, str]):  # fmt: skip
        from onnxruntime.quantization import quantize_static

        self.prepared, self.scratch, self.batches = prepared, scratch, batches
        self.input_name, self.method, self.names = input_name, method, names
        self.cache = scratch / "calibration.json"
        original = onnx_models.load_graph(prepared, "quantization").graph
        self.original_inputs = {node.name: list(node.input) for node in original.node}
        self.has_cache = "calibration_cache_path" in inspect.signature(quantize_static).parameters
        self.count = 0

    def write(self, float_layers: Iterable[str]) -> Path:
        """The prepared graph quantized, except ``float_layers``: those read float weights and
        the float tensors their inputs were (not the int8 copies other layers read)."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        float_layers = list(float_layers)
        self.count += 1
        output = self.scratch / f"int8-{self.count}.onnx"
        # a layer's output is quantized only where a quantized layer reads it, so a layer in float
        # can read float input; removable activations (ReLU) stay in the graph where a layer is kept
        # in float, so the float tensor it read before quantization still exists
        extra: dict[str, Any] = {"OpTypesToExcludeOutputQuantization": list(onnx_models.WEIGHT_OPS)}
        if float_layers:
            extra["QDQKeepRemovableActivations"] = True
        options: dict[str, Any] = {}
        if self.has_cache:
            options["calibration_cache_path"] = str(self.cache)
        try:
            quantize_static(
                str(self.prepared), str(output), _reader(self.batches, self.input_name),
                quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=[self.names[name] for name in float_layers],
                calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[self.method]),
                extra_options=extra, **options,
            )  # fmt: skip
        except Exception as error:  # onnxruntime's quantizer raises many types
            raise QuantizationFailed(f"onnxruntime could not quantize the model: {first_line(error)}") from error
        if float_layers:
            graph = onnx_models.load_graph(output, "quantization")
            onnx_models.read_float_inputs(graph, self.original_inputs, [self.names[name] for name in float_layers])
            onnx_models.save_graph(graph, output)
        return output


def _reader(batches: list[np.ndarray], input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.remaining, None)
            return None if batch is None else {input_name: batch}

        def __len__(self) -> int:
            return len(batches)

    return Batches()


# ------------------------------------------------------------------------------------ recording


def _summary(result: ControlResult, job: _Job, inputs: QuantizeInputs) -> QuantizeSummary:
    """What the control reached: per-group accuracy and drops, the layers left in float."""
    final: Measurement = result.final
    reference, control = job.reference, job.control
    return QuantizeSummary(
        output=None, bytes=0, float_bytes=job.float_file.stat().st_size,
        groups=list(control.table.group_names), float_accuracy=reference.tolist(),
        accuracy=final.accuracies.tolist(), drops=group_drops(reference, final.accuracies).tolist(),
        control_split=control.table.split, layers=list(job.layers), float_layers=list(final.float_layers),
        max_group_drop=inputs.max_group_drop,
        within=within_bound(final.drops, inputs.max_group_drop) if inputs.max_group_drop is not None else True,
        evaluations=result.evaluations,
        calibration={"method": inputs.calibration, "split": job.calibration.table.split, "images": job.images,
                     "per_group": job.per_group},
        harm={layer: result.quantized.worst_drop - measured.worst_drop for layer, measured in result.effects.items()},
    )  # fmt: skip


def _metadata(checkpoint: ckpt.Checkpoint, *, source: dict[str, Any], output: Path, summary: QuantizeSummary,
              data: DataSpec, target: str, classes: list[str] | None) -> dict[str, Any]:  # fmt: skip
    """The exported model's fields (arch, ``classes``, image size, normalisation) and the provenance
    of the quantized file, paths relative to it."""
    fields = ckpt.native_fields(checkpoint, classes=classes, provenance={})
    fields["format"] = onnx_models.ONNX_FORMAT
    provenance: dict[str, Any] = {
        "stage": "quantize",
        "source": record_path(source["file"], output),
        "source_sha256": source["sha256"],
        "source_stage": source["stage"],
        "data": record_path(data.root, output) if data.root is not None else None,
        "labels": record_path(data.labels, output) if data.labels is not None else None,
        "target": target,
        "groups": data.groups,
        "quantization": {
            "tool": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "weights": "int8",
            "weight_granularity": "per channel",
            "activations": "uint8",
            "calibration": summary.calibration,
            "control_split": summary.control_split,
            "max_group_drop": summary.max_group_drop,
            "layers": len(summary.layers),
            "float_layers": summary.float_layers,
            "groups": summary.groups,
            "float_accuracy": dict(zip(summary.groups, summary.float_accuracy)),
            "accuracy": dict(zip(summary.groups, summary.accuracy)),
            "group_drops": dict(zip(summary.groups, summary.drops)),
        },
    }
    if source.get("checkpoint") is not None:
        provenance["checkpoint"] = record_path(source["checkpoint"], output)
    if source.get("masks") is not None:
        masks, masks_sha256 = source["masks"]
        provenance["masks"] = record_path(masks, output)
        provenance["masks_sha256"] = masks_sha256
    fields["fairgrape"] = {key: value for key, value in provenance.items() if value is not None}
    return fields


def _failure(summary: QuantizeSummary, output: Path) -> str:
    over = [
        f"{group} {100 * drop:.2f}" for group, drop in zip(summary.groups, summary.drops)
        if drop > (summary.max_group_drop or 0)
    ]  # fmt: skip
    return (
        f"--max-group-drop {summary.max_group_drop:g}: with all {len(summary.layers)} weight layers back in float, "
        f"group(s) still drop more than the bound on the {summary.control_split or 'control'} split "
        f"(points: {', '.join(over)}), from what stays quantized besides them; nothing left to return, "
        f"{output} not written"
    )


def _require_writable(output: Path) -> None:
    if output.is_dir():
        raise InputError(f"-o {output} is a directory; name a file")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as error:
        raise InputError(f"cannot write -o {output}: {error.strerror or error}") from error


