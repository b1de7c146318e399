"""The export stage: a checkpoint -> a sparse safetensors file, ONNX or TorchScript.

Each format is one registered definition (``FORMATS``): the suffixes it writes, a writer and a
check. The file is written to a temporary path, checked against the model (read back and compared
on a batch of images or random input), and only then renamed into place: a failed check leaves no
file behind and exits 1.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import FairgrapeError, InputError, first_line
from ..io import checkpoints as ckpt
from ..io import sparse
from ..io.data import DEFAULT_IMAGE_SIZE
from ..io.files import atomic_output, record_path, refuse_overwriting_inputs
from ..io.images import Normalizer, read_image
from ..io.layouts import read_layout
from ..method.masks import nonzero_density
from ..registry import Registry
from ._inputs import ModelSource

log = logging.getLogger("fairgrape")

TOLERANCE = 1e-4  # logits of an export against the checkpoint's: absolute and relative


class ExportFailed(FairgrapeError):
    """The exporter failed, or the written file does not reproduce the model: nothing is left
    behind, exit 1."""

    exit_code = 1


@dataclass
class Check:
    """An export's check: passed (None: skipped), what it found, the largest logit difference."""

    passed: bool | None  # None: skipped
    text: str
    max_difference: float | None = None


@dataclass
class ExportJob:
    """What a format's writer and check get: the model, its metadata, and the check batch."""

    checkpoint: ckpt.Checkpoint
    image_size: int
    batch: torch.Tensor
    expected: torch.Tensor  # the checkpoint's logits on ``batch``
    batch_source: str
    values: str
    provenance: dict[str, Any]


@dataclass(frozen=True)
class ExportFormat:
    """One export format: the suffixes it writes, its writer and its check."""

    suffixes: tuple[str, ...]  # what OUT may end with (fairgrape tells checkpoints by their suffix)
    inferred_from: tuple[str, ...]  # the suffixes that choose this format without --format
    default_name: str  # OUT without -o, from MODEL's stem, in the current folder
    write: Callable[[ExportJob, Path], dict[str, Any]]  # -> details for the summary
    check: Callable[[ExportJob, Path], Check]
    needs: Callable[[], None] = lambda: None  # raises InputError when a package is missing


@dataclass
class ExportSummary:
    """What :func:`export` wrote, its size against the reference, and its check."""

    output: Path
    format: str
    bytes: int
    reference: str  # what the size is compared with: the input checkpoint, or its weights stored densely
    reference_bytes: int
    check: Check
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ratio(self) -> float:
        """The export's bytes over the reference's."""
        return self.bytes / self.reference_bytes if self.reference_bytes else float("nan")


# ------------------------------------------------------------------------------------------ sparse


def _write_sparse(job: ExportJob, path: Path) -> dict[str, Any]:
    checkpoint = job.checkpoint
    state_dict = _state_dict(checkpoint.model)
    prunable = ckpt.prunable_parameters(checkpoint.model)
    layers = sparse.sparse_layer_names(state_dict, prunable)
    fields = ckpt.native_fields(
        checkpoint, classes=checkpoint.classes, provenance=job.provenance, model=checkpoint.model
    )
    if not layers:
        log.warning("no prunable layer of %s has exact zeros: the sparse file is as large as the dense one",
                    checkpoint.path)  # fmt: skip
    sparse.write_sparse(path, state_dict, layers=layers, values=job.values, fields=fields)
    return {"values": job.values, "sparse_layers": len(layers), "prunable_layers": len(prunable),
            "density": nonzero_density(prunable)}  # fmt: skip


def _check_sparse(job: ExportJob, path: Path) -> Check:
    """Read back, the state dict is the model's exactly (kept values rounded to float16 with
    ``--values float16``); the logits' difference is reported."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        stored = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    decoded = sparse.decode(stored, metadata, path)
    expected = _state_dict(job.checkpoint.model)
    if job.values == "float16":
        for name in json.loads(metadata["sparse_layers"]):
            expected[name] = expected[name].to(torch.float16).to(expected[name].dtype)
    wrong = [name for name in expected if name not in decoded or not _same(decoded[name], expected[name])]
    wrong += [name for name in decoded if name not in expected]
    if wrong:
        return Check(False, f"the file reads back different weights ({', '.join(wrong[:3])})")
    rebuilt = copy.deepcopy(job.checkpoint.model)
    rebuilt.load_state_dict(decoded)
    difference = _max_difference(rebuilt(job.batch), job.expected)
    exact = "bit-exact" if job.values == "float32" else "exact to float16 rounding"
    return Check(True, f"weights read back {exact}; logits differ by at most {difference:.2g} "
                       f"on {job.batch_source}", difference)  # fmt: skip


# -------------------------------------------------------------------------------------- torchscript


def _write_torchscript(job: ExportJob, path: Path) -> dict[str, Any]:
    with warnings.catch_warnings():  # TracerWarnings, deprecation: the check below decides
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(job.checkpoint.model, job.batch, check_trace=False)
        except Exception as error:  # the tracer raises many types (data-dependent control flow, ...)
            raise ExportFailed(f"torch.jit.trace failed ({first_line(error)})") from error
    like = replace(job.checkpoint, kind="torchscript", image_size=job.image_size)
    ckpt.save_checkpoint(path, traced, like=like, classes=job.checkpoint.classes, provenance=job.provenance)
    return {"method": "torch.jit.trace"}


def _check_torchscript(job: ExportJob, path: Path) -> Check:
    """fairgrape reads it back as a TorchScript checkpoint, and its logits match."""
    reloaded = ckpt.load_checkpoint(path)
    if reloaded.classes != job.checkpoint.classes:
        return Check(False, "the archive reads back other class names")
    return _compare_logits(reloaded.model(job.batch), job, "TorchScript")


# --------------------------------------------------------------------------------------------- onnx


def _needs_onnx() -> None:
    import importlib.util

    if importlib.util.find_spec("onnx") is None:
        raise InputError("--format onnx needs the onnx package: pip install 'fairgrape[export]'")


def _write_onnx(job: ExportJob, path: Path) -> dict[str, Any]:
    """torch's TorchScript-based exporter first: it needs only onnx, writes one file and took 3 s
    on a ResNet-18 where the torch.export-based one (dynamo) took 21 s and needs onnxscript. The
    dynamo exporter is the fallback for models (or future torch versions) the first cannot do."""
    model = job.checkpoint.model
    failures = []
    for name, exporter in _ONNX_EXPORTERS.items():
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                exporter(model, job.batch, path)
        except Exception as error:  # the exporters raise many types; the next one may succeed
            failures.append(f"{name}: {first_line(error)}")
            continue
        _add_onnx_metadata(path, job)
        return {"exporter": name}
    raise ExportFailed(f"torch.onnx.export failed ({'; '.join(failures)})")


def _legacy_onnx_export(model: torch.nn.Module, batch: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        model, (batch,), str(path), dynamo=False, input_names=["images"], output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
    )  # fmt: skip


def _dynamo_onnx_export(model: torch.nn.Module, batch: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        model, (batch,), str(path), dynamo=True, external_data=False, verbose=False,
        input_names=["images"], output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )  # fmt: skip


_ONNX_EXPORTERS = {"torchscript-based": _legacy_onnx_export, "dynamo": _dynamo_onnx_export}


def _add_onnx_metadata(path: Path, job: ExportJob) -> None:
    """The native checkpoint's fields as the model's metadata_props (JSON strings)."""
    import onnx

    model = onnx.load(str(path))
    like = replace(job.checkpoint, image_size=job.image_size)
    fields = ckpt.native_fields(like, classes=like.classes, provenance=job.provenance)
    fields["format"] = "fairgrape.onnx.v1"
    for key, value in fields.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(model, str(path))


def _check_onnx(job: ExportJob, path: Path) -> Check:
    """onnxruntime's logits on the check batch match the checkpoint's."""
    try:
        import onnxruntime
    except ImportError:
        return Check(None, "check skipped: onnxruntime is not installed (pip install 'fairgrape[export]')")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (logits,) = session.run(["logits"], {"images": job.batch.numpy()})
    except Exception as error:  # onnxruntime's own exception types: a graph it rejects or cannot run
        return Check(False, f"onnxruntime cannot run the exported graph ({first_line(error)})")
    return _compare_logits(torch.from_numpy(logits), job, "onnxruntime")


FORMATS: Registry[ExportFormat] = Registry("--format")
FORMATS.add("sparse", ExportFormat(
    suffixes=(".safetensors",), inferred_from=(".safetensors",),
    default_name="{stem}.sparse.safetensors",  # not {stem}.safetensors: that may be MODEL itself
    write=_write_sparse, check=_check_sparse,
))  # fmt: skip
FORMATS.add("onnx", ExportFormat(
    suffixes=(".onnx",), inferred_from=(".onnx",), default_name="{stem}.onnx",
    write=_write_onnx, check=_check_onnx, needs=_needs_onnx,
))  # fmt: skip
FORMATS.add("torchscript", ExportFormat(
    suffixes=(".torchscript", ".pt", ".pth"), inferred_from=(".torchscript",),  # .pt: native too
    default_name="{stem}.torchscript", write=_write_torchscript, check=_check_torchscript,
))  # fmt: skip
DEFAULT_FORMAT = "sparse"  # without -o or --format
_KIND_NAMES = {"torchscript": "a TorchScript archive", "module": "a pickled module"}


# ---------------------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class ExportInputs:
    """Everything export works on, checked (no model loaded)."""

    model: ModelSource
    output: Path
    format: str
    values: str
    data: Path | None
    labels: Path | None
    image_size: int | None
    batch_size: int
    seed: int


def default_output(model: Path, format: str | None, output: Path | None = None) -> Path:
    """The file an export of ``model`` is written to without ``-o``: its stem with the format's
    suffix (``pruned.sparse.safetensors``), relative to the current folder."""
    return Path(FORMATS[choose_format(format, output)].default_name.format(stem=Path(model).stem))


def resolve_export(
    *,
    model: ModelSource,
    output: Path,
    format: str | None = None,
    values: str = "float32",
    data: Path | None = None,
    labels: Path | None = None,
    image_size: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
) -> ExportInputs:
    """Choose the format (``format``, else ``output``'s suffix), check the flags and that the
    output can be written, before loading anything."""
    name = choose_format(format, output)
    if values not in sparse.VALUE_DTYPES:
        raise InputError(f"--values {values}: choose {' or '.join(sparse.VALUE_DTYPES)}")
    if values != "float32" and name != "sparse":
        raise InputError(f"--values {values} applies to --format sparse only")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    if labels is not None and data is None:
        raise InputError(f"--labels {labels} names the labels of --data's images; pass --data FOLDER too")
    FORMATS[name].needs()
    output = Path(output)
    refuse_overwriting_inputs([output], [model.path, labels])
    _require_writable(output)
    return ExportInputs(model, output, name, values, data, labels, image_size, batch_size, seed)


@torch.no_grad()
def export(
    *,
    model: ModelSource,
    output: Path,
    format: str | None = None,
    values: str = "float32",
    data: Path | None = None,
    labels: Path | None = None,
    image_size: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
) -> ExportSummary:
    """Write ``model`` as ``format`` (or the format ``output``'s suffix names), checked."""
    started = time.perf_counter()
    inputs = resolve_export(
        model=model, output=output, format=format, values=values, data=data, labels=labels,
        image_size=image_size, batch_size=batch_size, seed=seed,
    )  # fmt: skip
    job = _job(inputs)
    chosen = FORMATS[inputs.format]
    with atomic_output(inputs.output) as tmp:
        details = chosen.write(job, tmp)
        check = chosen.check(job, tmp)
        if check.passed is False:
            raise ExportFailed(f"{inputs.output} not written: {check.text}")
    reference, reference_bytes = _reference_size(job.checkpoint)
    return ExportSummary(
        output=inputs.output, format=inputs.format, bytes=inputs.output.stat().st_size, reference=reference,
        reference_bytes=reference_bytes, check=check, details=details,
        seconds=time.perf_counter() - started,
    )  # fmt: skip


def _job(inputs: ExportInputs) -> ExportJob:
    """The loaded model, its check batch and the logits the export must reproduce."""
    model = inputs.model
    checkpoint = model.load(weights_for="export")
    if inputs.format == "sparse" and checkpoint.arch is None:
        checkpoint = replace(checkpoint, arch=model.arch)
        if checkpoint.arch is None:
            raise InputError(
                f"--format sparse stores weights by name, and {model.path} ({_KIND_NAMES[checkpoint.kind]}) "
                "does not say which architecture rebuilds them; pass --arch NAME"
            )
    size = int(inputs.image_size or checkpoint.image_size or DEFAULT_IMAGE_SIZE)
    batch, batch_source = _check_batch(checkpoint, inputs.data, inputs.labels, size, inputs.batch_size, inputs.seed)
    checkpoint.model.eval()
    return ExportJob(
        checkpoint=checkpoint, image_size=size, batch=batch, expected=checkpoint.model(batch),
        batch_source=batch_source, values=inputs.values,
        provenance=_provenance(checkpoint, inputs.output, inputs.format, inputs.values),
    )  # fmt: skip


def choose_format(format: str | None, output: Path | None) -> str:
    """``--format``, or the one format ``output``'s suffix names; refuses what cannot be told."""
    if format is not None:
        accepted = FORMATS.choose(format).suffixes
        if output is not None and output.suffix.lower() not in accepted:
            raise InputError(
                f"--format {format} writes {' or '.join(accepted)} files (fairgrape tells formats by their "
                f"suffix); name -o {output.with_suffix(accepted[0])}"
            )
        return format
    if output is None:
        return DEFAULT_FORMAT
    suffix = output.suffix.lower()
    for name, definition in FORMATS.items():
        if suffix in definition.inferred_from:
            return name
    known = ", ".join(f"{s} {name}" for name, d in FORMATS.items() for s in d.inferred_from)
    if any(suffix in definition.suffixes for definition in FORMATS.values()):
        raise InputError(
            f"-o {output}: {suffix} is used for native checkpoints and TorchScript alike; pass --format "
            f"({known})"
        )
    raise InputError(
        f"-o {output}: cannot tell the format from {suffix or 'no suffix'}; pass --format ({known})"
    )


# --------------------------------------------------------------------------------------- plumbing


def _require_writable(output: Path) -> None:
    """Refuse an output that cannot be written before loading anything (exit 2, one line)."""
    if output.is_dir():
        raise InputError(f"-o {output} is a directory; name a file")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as error:
        raise InputError(f"cannot write -o {output}: {error.strerror or error}") from error


def _check_batch(
    checkpoint: ckpt.Checkpoint, data: Path | None, labels: Path | None, size: int, count: int, seed: int
) -> tuple[torch.Tensor, str]:
    """The first ``count`` images of ``data``, normalised as the model expects, else seeded
    standard-normal input of the model's shape."""
    if data is None:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(count, 3, size, size, generator=generator), f"{count} random inputs"
    table = read_layout(data, labels)
    rows = list(range(min(count, len(table))))
    if not rows:
        raise InputError(f"--data {data} lists no images")
    images = []
    for row in rows:
        file = table.root / table.paths[row]
        try:
            images.append(read_image(file, size))
        except Exception as error:  # PIL raises many types for broken files
            raise InputError(
                f"{table.where(row)}: cannot read image {file} ({first_line(error)})"
            ) from error
    batch = Normalizer(*checkpoint.normalization, torch.device("cpu"))(torch.stack(images))
    return batch, f"{len(rows)} images of {data}"


def _provenance(checkpoint: ckpt.Checkpoint, output: Path, name: str, values: str) -> dict[str, Any]:
    """Where the export came from; the masks the source names stay reachable from the export
    (``report`` shows their settings, ``prune`` keeps them), re-anchored to the new file."""
    provenance: dict[str, Any] = {
        "stage": "export",
        "format": name,
        "source": record_path(checkpoint.path, output),
        "source_sha256": checkpoint.sha256,
        "source_stage": checkpoint.provenance.get("stage"),
    }
    if name == "sparse":
        provenance["values"] = values
    masks = ckpt.named_masks(checkpoint)
    if masks is not None:
        provenance["masks"] = record_path(masks, output)
        provenance["masks_sha256"] = checkpoint.provenance.get("masks_sha256")
    return {key: value for key, value in provenance.items() if value is not None}


def _reference_size(checkpoint: ckpt.Checkpoint) -> tuple[str, int]:
    """What the export is measured against: the input file when it is a checkpoint storing its
    weights densely (pruned or slim, it may be smaller than the model it came from), else the
    bytes of its weights stored densely (what a plain safetensors checkpoint holds)."""
    if checkpoint.kind in ("native", "state_dict"):
        return f"the input checkpoint {checkpoint.path}", checkpoint.path.stat().st_size
    dense = sum(tensor.numel() * tensor.element_size() for tensor in _state_dict(checkpoint.model).values())
    return "its weights stored densely", dense


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}


def _compare_logits(logits: torch.Tensor, job: ExportJob, runner: str) -> Check:
    if logits.shape != job.expected.shape:
        return Check(
            False, f"{runner} gives logits of shape {tuple(logits.shape)}, not {tuple(job.expected.shape)}"
        )
    difference = _max_difference(logits, job.expected)
    passed = bool(torch.allclose(logits.float(), job.expected.float(), rtol=TOLERANCE, atol=TOLERANCE))
    verdict = "match" if passed else f"differ beyond {TOLERANCE:g}"
    text = f"{runner} logits {verdict} (max |difference| {difference:.2g}) on {job.batch_source}"
    return Check(passed, text, difference)


def _same(found: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal in dtype, shape and every value (NaN where NaN; 0.0 and -0.0 alike)."""
    if found.dtype != expected.dtype or found.shape != expected.shape:
        return False
    if torch.equal(found, expected):
        return True
    return found.is_floating_point() and bool(((found == expected) | (found.isnan() & expected.isnan())).all())


def _max_difference(logits: torch.Tensor, expected: torch.Tensor) -> float:
    return float((logits.float() - expected.float()).abs().max()) if logits.numel() else 0.0

