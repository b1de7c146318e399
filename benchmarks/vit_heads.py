"""Head pruning of Vision Transformers: is a ViT at ``--granularity channel --rate 0.5`` smaller and faster?

Models, random weights, 224 px, 1000 classes: timm's ``vit_small_patch16_224`` (12 blocks, width
384, 6 heads of 64, MLP 1536) and ``vit_tiny_patch16_224`` (width 192, 3 heads), and a Hugging Face
``ViTForImageClassification`` of vit_small's shape (a folder saved with ``save_pretrained``). Each
is pruned by ``fairgrape prune --granularity channel --method magnitude --rate R`` (per group: the
kept widths, hence the speed, do not depend on the method), written and loaded back from its
checkpoint (its structure record: no tracing). The rate is the fraction of each block's heads and
of its MLP hidden units removed; the token width (384) stays. For the dense and the pruned model:
parameters, FLOPs (torch.utils.flop_counter, one image, a multiply-add counts 2, attention
products included) and CPU latency at batch 1 and 8 (torch.utils.benchmark, the same thread count
for all, one by default; interleaved rounds in the same run so that the machine's load falls on
every model alike; median and interquartile range; the speed-up is the median of the rounds'
dense/pruned ratios).

    python benchmarks/vit_heads.py --rates 0.5 --rounds 7
    python benchmarks/vit_heads.py --models timm:vit_small_patch16_224 --rates 0.3 0.5 0.7 --threads 2

Recorded on our 2-core VM, torch 2.14, timm 1.0.31, transformers 5.24 (README.md, "timm and
Hugging Face models"): see the README for the table and the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
from structured import time_interleaved  # benchmarks/ is the script's folder

MODELS = ("timm:vit_small_patch16_224", "timm:vit_tiny_patch16_224", "hf:vit-small-shape")
SIZE = 224


def dense_checkpoint(model: str, work: Path) -> Path:
    """The dense model written as a user would have it: a timm native checkpoint, or a HF folder."""
    torch.manual_seed(0)
    if model.startswith("hf:"):
        from transformers import ViTConfig, ViTForImageClassification
        from transformers.utils import logging

        logging.disable_progress_bar()
        config = ViTConfig(image_size=SIZE, patch_size=16, hidden_size=384, num_hidden_layers=12,
                           num_attention_heads=6, intermediate_size=1536, num_labels=1000)  # fmt: skip
        folder = work / "hf-vit-small"
        ViTForImageClassification(config).save_pretrained(str(folder))
        return folder
    from fairgrape_cli.io.checkpoints import build_model

    path = work / f"{model.removeprefix('timm:')}.pt"
    built = build_model(model, 1000)
    torch.save({"arch": model, "num_classes": 1000, "state_dict": built.state_dict(), "image_size": SIZE}, path)
    return path


def pruned_models(model: str, rates: list[float], work: Path) -> dict[str, torch.nn.Module]:
    """The dense model and one pruned per rate, each loaded back from its checkpoint on disk."""
    from fairgrape_cli import stages
    from fairgrape_cli.io.checkpoints import load_checkpoint

    dense = dense_checkpoint(model, work)
    models = {"dense": load_checkpoint(dense).model.eval()}
    stem = model.replace(":", "-")
    for rate in rates:
        summary = stages.prune(
            rate=rate, model=stages.ModelSource(dense), method="magnitude", granularity="channel",
            output=work / f"{stem}-{rate}-masks.safetensors", model_output=work / f"{stem}-{rate}-slim",
        )  # fmt: skip
        models[f"heads+mlp {rate}"] = load_checkpoint(summary.checkpoint).model.eval()
    return models


def heads_of(model: torch.nn.Module) -> list[int]:
    """The head count of each attention layer (timm's and transformers' ViT attention)."""
    return [
        getattr(module, "num_heads", None) or getattr(module, "num_attention_heads")
        for module in model.modules()
        if type(module).__name__ in ("Attention", "ViTAttention")
    ]


def measure(model: str, rates: list[float], rounds: int, threads: int, work: Path) -> list[dict]:
    """Parameters, FLOPs and interleaved CPU timings of the dense and pruned ``model``."""
    from fairgrape_cli.method.cost import model_cost

    models = pruned_models(model, rates, work)
    rows = {
        name: {"model": model, "variant": name, "heads": heads_of(built)[:1], **model_cost(built, SIZE).__dict__}
        for name, built in models.items()
    }
    for batch in (1, 8):
        time_interleaved(models, rows, torch.randn(batch, 3, SIZE, SIZE), rounds=rounds, threads=threads,
                         number=5 if batch == 1 else 1)
    for row in rows.values():
        row["params_ratio"] = row["params"] / rows["dense"]["params"]
        row["flops_ratio"] = row["flops"] / rows["dense"]["flops"]
        row["threads"] = threads
    return list(rows.values())


def print_rows(rows: list[dict]) -> None:
    """The table of the README."""
    print(f"{'model':<42} {'heads':>5} {'params':>15} {'FLOPs':>14} {'batch 1 ms (IQR)':>17} {'speed-up':>12} "
          f"{'batch 8 ms (IQR)':>17} {'speed-up':>12}")  # fmt: skip
    for row in rows:
        print(
            f"{row['model'] + ' ' + row['variant']:<42} {row['heads'][0] if row['heads'] else '-':>5} "
            f"{row['params'] / 1e6:>6.2f} M ({100 * row['params_ratio']:>3.0f}%) "
            f"{row['flops'] / 1e9:>5.2f} G ({100 * row['flops_ratio']:>3.0f}%) "
            f"{row['ms_b1']:>8.1f} ({row['iqr_b1']:>5.1f}) {row['speedup_b1']:>5.2f}x ({row['speedup_iqr_b1']:.2f}) "
            f"{row['ms_b8']:>8.0f} ({row['iqr_b8']:>5.0f}) {row['speedup_b8']:>5.2f}x ({row['speedup_iqr_b8']:.2f})"
        )


def main() -> None:
    """Parse the flags, measure every model, print the table (and write --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--rates", nargs="+", type=float, default=[0.5])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="Also write the rows (with every round's time) here.")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            rows.extend(measure(model, args.rates, args.rounds, args.threads, Path(folder)))
    print_rows(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
