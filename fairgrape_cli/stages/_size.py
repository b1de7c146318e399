"""The size of a loaded model against its dense architecture: parameters and FLOPs of both."""

from __future__ import annotations

from typing import Any

from ..io import checkpoints as ckpt


def model_size(checkpoint: ckpt.Checkpoint, image_size: int) -> dict[str, Any]:
    """``params``, ``flops`` of the model and ``dense_params``, ``dense_flops`` of a fresh build
    of its architecture (None when the checkpoint names none: TorchScript, a pickled module). An
    ONNX model counts the weights of its Conv/Gemm/MatMul layers (BatchNorm folded into them) and
    no FLOPs."""
    from ..method.cost import model_cost

    if checkpoint.kind == "onnx":  # onnxruntime runs it: count the weights the file holds
        weights = ckpt.prunable_parameters(checkpoint.model)
        params = sum(weight.numel() for weight in weights.values())
        return {"params": params, "flops": None, "dense_params": None, "dense_flops": None}
    own = model_cost(checkpoint.model, image_size)
    dense = None
    if checkpoint.arch:
        dense = model_cost(ckpt.dense_reference(checkpoint.arch, checkpoint.num_classes), image_size)
    return {
        "params": own.params,
        "flops": own.flops,
        "dense_params": dense.params if dense else None,
        "dense_flops": dense.flops if dense else None,
    }
