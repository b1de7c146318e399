"""The size of a loaded model against its dense architecture: parameters and FLOPs of both."""

from __future__ import annotations

from ..io import checkpoints as ckpt
from ..io.architectures import family
from ..io.reports import ModelSize


def model_size(checkpoint: ckpt.Checkpoint, image_size: int) -> ModelSize:
    """``params``, ``flops`` of the model and ``dense_params``, ``dense_flops`` of a fresh build
    of its architecture (None when the checkpoint names none: TorchScript, a pickled module), and
    ``nonzero_params``: a weight-pruned model keeps its dense shapes with exact zeros. An ONNX
    model counts the weights of its Conv/Gemm/MatMul layers (BatchNorm folded into them) and no
    FLOPs."""
    from ..method.cost import model_cost

    if checkpoint.kind == "onnx":  # onnxruntime runs it: count the weights the file holds
        weights = ckpt.prunable_parameters(checkpoint.model)
        params = sum(weight.numel() for weight in weights.values())
        nonzero = sum(int(weight.count_nonzero()) for weight in weights.values())
        return ModelSize(params=params, nonzero_params=nonzero, image_size=image_size)
    own = model_cost(checkpoint.model, image_size)
    dense = None
    if _buildable_arch(checkpoint):
        reference = ckpt.dense_reference(checkpoint.arch, checkpoint.num_classes, arch_args=checkpoint.arch_args)
        dense = model_cost(reference, image_size)
    return ModelSize(
        params=own.params,
        flops=own.flops,
        dense_params=dense.params if dense else None,
        dense_flops=dense.flops if dense else None,
        nonzero_params=own.nonzero_params,
        image_size=image_size,  # what the FLOPs are of
    )


def density_against_dense(checkpoint: ckpt.Checkpoint) -> float:
    """Nonzero prunable weights over the dense architecture's prunable weights: a channel-pruned
    (slim) model counts the channels it no longer has as pruned."""
    from ..method.masks import nonzero_density

    weights = ckpt.prunable_parameters(checkpoint.model)
    density = nonzero_density(weights)
    if _buildable_arch(checkpoint):
        dense = ckpt.prunable_parameters(
            ckpt.dense_reference(checkpoint.arch, checkpoint.num_classes, arch_args=checkpoint.arch_args)
        )
        dense_total = sum(weight.numel() for weight in dense.values())
        total = sum(weight.numel() for weight in weights.values())
        if dense_total > total:
            density *= total / dense_total
    return density


def _buildable_arch(checkpoint: ckpt.Checkpoint) -> bool:
    """Whether the dense architecture can be built for comparison: not without a name, nor for an
    ONNX file made from a Hugging Face folder (built from its config.json, which the file lacks)."""
    if not checkpoint.arch:
        return False
    return not (checkpoint.kind == "onnx" and family(checkpoint.arch) == "hf")
