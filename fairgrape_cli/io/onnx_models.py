"""ONNX classifiers as fairgrape reads them: an onnxruntime session behind an ``nn.Module``.

A file written by ``fairgrape export`` or ``fairgrape quantize`` carries the native checkpoint's
fields in its ``metadata_props`` (``arch``, ``num_classes``, ``classes``, ``image_size``, ``mean``,
``std``, ``fairgrape``: JSON strings), so it is evaluated with the same classes, image size and
normalisation as the checkpoint it came from, without flags. Any other ONNX file is read too when
it is a classifier fairgrape can feed: one float input ``[N, 3, H, W]`` (N, H, W may be symbolic)
and one output ``[N, K]`` (or an output named ``logits``).

The model runs in onnxruntime on the CPU whatever the device the caller asked for: it takes and
returns torch tensors (on the images' device), so every stage that only evaluates a model (report,
data-prune) can use it like a checkpoint. It has no parameters and cannot be trained.

onnxruntime is an optional extra: :func:`require_onnxruntime` says in one line what to install.
Reading the weights (for density and size) needs the ``onnx`` package too, which the extra holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError, first_line
from .files import resolve_recorded

ONNX_FORMAT = "fairgrape.onnx.v1"
INSTALL_HINT = "pip install 'fairgrape[onnx]'"
WEIGHT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")  # the ops whose weights int8 quantizes
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_CHANNELS = 3


def require_onnxruntime(purpose: str):
    """The onnxruntime module, or an InputError naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError as error:
        raise InputError(f"{purpose} needs onnxruntime, which is not installed: {INSTALL_HINT}") from error
    return onnxruntime


def require_onnx(purpose: str):
    """The onnx module, or an InputError naming the extra that installs it."""
    try:
        import onnx
    except ImportError as error:
        raise InputError(f"{purpose} needs the onnx package, which is not installed: {INSTALL_HINT}") from error
    return onnx


def is_onnx_path(path: str | Path) -> bool:
    """Whether ``path`` names an ONNX file (fairgrape tells formats by their suffix)."""
    return Path(path).suffix.lower() == ".onnx"


def runtime_only(path: Path, stage: str) -> str:
    """Why ``stage`` refuses the ONNX file ``path``, naming the checkpoint it was made from when
    its metadata records one."""
    what = "an ONNX model"
    source = None
    try:
        metadata = read_metadata(load_graph(path, "reading an ONNX file's metadata"))
        provenance = metadata.get("fairgrape") if isinstance(metadata.get("fairgrape"), dict) else {}
        if provenance.get("quantization"):
            what = "a quantized ONNX model"
        if isinstance(provenance.get("checkpoint"), str):
            source = provenance["checkpoint"]
        elif isinstance(provenance.get("source"), str):
            source = provenance["source"]
    except InputError:
        pass
    remedy = f"; use the checkpoint it was made from ({resolve_recorded(source, path)})" if source else "; use a PyTorch checkpoint"
    return f"{path} is {what}, which onnxruntime runs but nothing can train or prune: {stage} needs its weights in PyTorch{remedy}"


# ------------------------------------------------------------------------------------- the module


class OnnxModel(nn.Module):
    """An ONNX classifier run by onnxruntime on the CPU, called like a PyTorch model.

    ``forward`` takes a float image batch ``[N, 3, H, W]`` (any device) and returns the logits
    ``[N, K]`` as a float32 tensor on the images' device. A file whose batch axis is fixed (1, say)
    is run in chunks of that size.
    """

    def __init__(self, session, *, path: Path, input_name: str, output_name: str,
                 fixed_batch: int | None, image_size: int | None):  # fmt: skip
        super().__init__()
        self.session = session
        self.path = path
        self.input_name = input_name
        self.output_name = output_name
        self.fixed_batch = fixed_batch
        self.image_size = image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The logits of a batch of normalised images, run by onnxruntime on the CPU."""
        if self.image_size is not None and tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise InputError(
                f"{self.path} takes {self.image_size}x{self.image_size} images, not "
                f"{images.shape[-2]}x{images.shape[-1]}; leave --image-size out"
            )
        array = np.ascontiguousarray(images.detach().float().cpu().numpy())
        chunk = self.fixed_batch or len(array)
        outputs = []
        for start in range(0, len(array), max(chunk, 1)):
            part = array[start : start + chunk]
            padding = chunk - len(part) if self.fixed_batch else 0
            if padding:  # a fixed batch axis: fill the last chunk, drop what the filler gave
                part = np.concatenate([part, np.zeros((padding, *part.shape[1:]), dtype=part.dtype)])
            outputs.append(self.run(part)[: len(part) - padding])
        logits = np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)).to(images.device)

    def run(self, array: np.ndarray) -> np.ndarray:
        """The session's output for one input array (an InputError if onnxruntime fails)."""
        try:
            (logits,) = self.session.run([self.output_name], {self.input_name: array})
        except Exception as error:  # onnxruntime's own exception types
            raise InputError(f"onnxruntime cannot run {self.path}: {first_line(error)}") from error
        return logits

    def train(self, mode: bool = True) -> OnnxModel:
        """Always evaluation mode."""
        # evaluation only: the runtime has no training mode (eval() calls train(False))
        return super().train(False)

    def __getstate__(self):  # the session holds native handles: never pickled
        raise TypeError("an OnnxModel cannot be pickled; reload it from its file")


# ------------------------------------------------------------------------------------------ reading


@dataclass
class OnnxFile:
    """What :func:`read_onnx` found in a file: the runnable model and what the file says."""

    model: OnnxModel
    num_classes: int
    image_size: int | None  # the input's fixed H (= W), if fixed
    metadata: dict[str, Any] = field(default_factory=dict)  # metadata_props, JSON values decoded

    @property
    def quantized(self) -> bool:
        """Whether the file was quantized (by fairgrape, or holds quantized nodes)."""
        return bool(self.metadata.get("fairgrape", {}).get("quantization")) or quantized_graph(self.model.path)


def read_onnx(path: Path, *, image_size: int | None = None) -> OnnxFile:
    """Open ``path`` in onnxruntime and check that fairgrape can feed it (one image input, one
    ``[N, K]`` output); refuse anything else in one line."""
    runtime = require_onnxruntime(f"reading {path}")
    try:
        session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # a file that is not ONNX, or a graph onnxruntime rejects
        raise InputError(f"cannot read {path}: not an ONNX model onnxruntime can load ({first_line(error)})") from error
    metadata = {key: _decoded(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}
    if not isinstance(metadata.get("fairgrape"), dict):
        metadata["fairgrape"] = {}
    input_name, fixed_batch, fixed_size = _image_input(session, path)
    output_name, classes_axis = _logits_output(session, path)
    size = fixed_size or image_size or _int(metadata.get("image_size"))
    model = OnnxModel(session, path=path, input_name=input_name, output_name=output_name,
                      fixed_batch=fixed_batch, image_size=fixed_size)  # fmt: skip
    num_classes = classes_axis if isinstance(classes_axis, int) else None
    if num_classes is None:  # a symbolic class axis: ask the model
        probe = torch.zeros(fixed_batch or 1, _CHANNELS, size or 224, size or 224)
        logits = model(probe)
        if logits.ndim != 2:
            raise _not_a_classifier(path, f"its output is {logits.ndim}-dimensional, not [N, classes]")
        num_classes = int(logits.shape[1])
    return OnnxFile(model=model, num_classes=num_classes, image_size=fixed_size, metadata=metadata)


def _image_input(session, path: Path) -> tuple[str, int | None, int | None]:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(item.name for item in inputs)
        raise _not_a_classifier(path, f"it takes {len(inputs)} inputs ({names}), not one image batch")
    image = inputs[0]
    shape = list(image.shape or [])
    if image.type != "tensor(float)" or len(shape) != 4:
        raise _not_a_classifier(path, f"its input {image.name!r} is {image.type} {_shape(shape)}, not float [N, 3, H, W]")
    batch, channels, height, width = shape
    if isinstance(channels, int) and channels != _CHANNELS:
        raise _not_a_classifier(path, f"its input {image.name!r} has {channels} channels, not 3 (RGB)")
    if isinstance(height, int) != isinstance(width, int) or (isinstance(height, int) and height != width):
        raise _not_a_classifier(path, f"its input {image.name!r} is {_shape(shape)}: fairgrape feeds square images")
    return image.name, batch if isinstance(batch, int) and batch > 0 else None, height if isinstance(height, int) else None


def _logits_output(session, path: Path) -> tuple[str, int | str | None]:
    outputs = session.get_outputs()
    chosen = [item for item in outputs if item.name == "logits"] if len(outputs) > 1 else outputs
    if len(chosen) != 1:
        names = ", ".join(item.name for item in outputs)
        raise _not_a_classifier(path, f"it has {len(outputs)} outputs ({names}) and none is named 'logits'")
    output = chosen[0]
    shape = list(output.shape or [])
    if output.type not in ("tensor(float)", "tensor(float16)", "tensor(double)") or len(shape) != 2:
        raise _not_a_classifier(path, f"its output {output.name!r} is {output.type} {_shape(shape)}, not float [N, classes]")
    return output.name, shape[1]


def _not_a_classifier(path: Path, why: str) -> InputError:
    return InputError(f"{path} is not a classifier fairgrape can feed: {why}")


def _shape(shape: list) -> str:
    return "[" + ", ".join(str(dim) if dim not in (None, "") else "?" for dim in shape) + "]"


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None




# ------------------------------------------------------------------------------- graph: weights


def load_graph(path: Path, purpose: str):
    """The ``onnx.ModelProto`` of ``path`` (weights included)."""
    onnx = require_onnx(purpose)
    try:
        return onnx.load(str(path))
    except Exception as error:  # protobuf's decode errors and onnx's own
        raise InputError(f"cannot read {path}: not an ONNX model ({first_line(error)})") from error


def quantized_graph(path: Path) -> bool:
    """Whether the graph holds QuantizeLinear / DequantizeLinear nodes (or quantized ops)."""
    try:
        graph = load_graph(path, "telling whether a model is quantized").graph
    except InputError:
        return False
    return any(node.op_type in QDQ_OPS or node.op_type.startswith("QLinear") for node in graph.node)


@dataclass(frozen=True)
class WeightLayer:
    """A node of the graph that multiplies by a constant weight (Conv, Gemm, MatMul)."""

    node: str  # the node's name in the graph
    name: str  # the PyTorch-style module name read from it (``layer1.0.conv1``), else the node's
    op_type: str
    weight: str  # the initializer holding its weight (int8 in a QDQ file: through DequantizeLinear)


def layer_name(node_name: str) -> str:
    """``/layer1/layer1.0/conv1/Conv`` (torch's exporter scopes) -> ``layer1.0.conv1``."""
    parts = [part for part in node_name.strip("/").split("/") if part]
    if len(parts) < 2:
        return node_name
    scopes = parts[:-1]  # the last part is the op type, possibly numbered (Conv_3)
    kept = [scope for scope, inner in zip(scopes, [*scopes[1:], None]) if inner is None or not inner.startswith(f"{scope}.")]
    return ".".join(kept) or node_name


def weight_layers(model) -> list[WeightLayer]:
    """The weight layers of an ``onnx.ModelProto`` in graph order (a weight read through a
    DequantizeLinear of an initializer counts: that is how a QDQ file stores int8 weights)."""
    graph = model.graph
    constants = {tensor.name for tensor in graph.initializer}
    dequantized = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    layers, names = [], {}
    for position, node in enumerate(graph.node):
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2:
            continue
        weight = dequantized.get(node.input[1], node.input[1])
        if weight not in constants:
            continue
        name = layer_name(node.name) if node.name else f"{node.op_type}_{position}"
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name}#{names[name]}"
        layers.append(WeightLayer(node=node.name, name=name, op_type=node.op_type, weight=weight))
    return layers


def weight_tensors(model) -> dict[str, torch.Tensor]:
    """Each weight layer's weight as stored (int8 values minus the zero point in a QDQ file: zero
    exactly where the float weight was zero), by layer name: for density and parameter counts."""
    from onnx import numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    zero_points = {
        node.input[0]: node.input[2] for node in graph.node if node.op_type == "DequantizeLinear" and len(node.input) > 2
    }
    found = {}
    for layer in weight_layers(model):
        values = numpy_helper.to_array(initializers[layer.weight])
        zero_point = zero_points.get(layer.weight)
        if zero_point in initializers:
            offset = numpy_helper.to_array(initializers[zero_point]).astype(np.int32)
            if offset.ndim == 1 and values.ndim > 1:  # per channel, along axis 0 (Conv) or 1 (Gemm/MatMul)
                axis = 0 if offset.shape[0] == values.shape[0] else 1
                offset = offset.reshape([-1 if i == axis else 1 for i in range(values.ndim)])
            values = values.astype(np.int32) - offset
        found[layer.name] = torch.from_numpy(np.array(values, copy=True))
    return found


def read_float_inputs(model, original_inputs: Mapping[str, list[str]], nodes: list[str]) -> None:
    """Make ``nodes`` of a QDQ graph read the tensors they read before quantization (where those
    still exist) instead of their dequantized int8 copies, then drop the nodes and initializers
    nothing reads any more. ``original_inputs``: node name -> its inputs in the float graph."""
    graph = model.graph
    produced = {output for node in graph.node for output in node.output}
    available = produced | {item.name for item in graph.input} | {tensor.name for tensor in graph.initializer}
    wanted = set(nodes)
    for node in graph.node:
        if node.name not in wanted:
            continue
        for position, original in enumerate(original_inputs.get(node.name, [])):
            if position < len(node.input) and original and node.input[position] != original and original in available:
                node.input[position] = original
    _drop_unused(graph)


def _drop_unused(graph) -> None:
    """Remove the nodes whose outputs nothing reads (repeatedly), then unread initializers."""
    outputs = {item.name for item in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        unused = [node for node in graph.node if not any(output in read for output in node.output)]
        if not unused:
            break
        for node in unused:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input} | outputs
    for tensor in [tensor for tensor in graph.initializer if tensor.name not in read]:
        graph.initializer.remove(tensor)


# ------------------------------------------------------------------------------------- writing


def set_metadata(model, fields: Mapping[str, Any]) -> None:
    """Replace ``model``'s metadata_props by ``fields`` (strings as they are, others as JSON)."""
    del model.metadata_props[:]
    for key, value in fields.items():
        if value is None:
            continue
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)


def read_metadata(model) -> dict[str, Any]:
    """An ONNX model's metadata_props, their JSON values decoded."""
    return {entry.key: _decoded(entry.value) for entry in model.metadata_props}


def save_graph(model, path: Path) -> None:
    """Write ``model`` to ``path`` as one file (weights inside)."""
    import onnx

    onnx.save_model(model, str(path), save_as_external_data=False)
