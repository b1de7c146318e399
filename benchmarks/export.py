"""Sparse export: file size, load time and round trip of `fairgrape export --format sparse`.

ResNet-18 and ResNet-34 (random weights, 7 classes) pruned by magnitude (`fairgrape prune
--method magnitude`, per layer) to densities 0.5, 0.1 and 0.01, then exported with float32 and
float16 values. For each: the sparse file's size against the dense pruned checkpoint (pruned.pt),
the time `load_checkpoint` takes on each file (in this process, warm, repeats interleaved; mean and
standard deviation), and whether the weights read back bit-exact (float32) or exactly as the
weights rounded to float16 (float16).

    python benchmarks/export.py                         # both models, 3 densities, 5 load repeats
    python benchmarks/export.py --archs resnet18 --repeat 10
    python benchmarks/export.py --work /tmp/fg-export   # keep (and reuse) the pruned checkpoints

Result of `python benchmarks/export.py --work /tmp/fg-export` (5 loads each; 2 CPU cores shared
with other agents' jobs, load average 17-21 during the run, so every time is several times what an
idle machine takes; compare within a row; sizes are exact):

    | model | density | dense pruned.pt | sparse f32 | sparse f16 | load dense (s) | load f32 (s) | load f16 (s) | export f32 (s) | round trip f32 / f16 |
    |---|---|---|---|---|---|---|---|---|---|
    | resnet18 | 0.5 | 44.8 MB | 53.2% | 28.3% | 2.34 ± 0.15 | 2.85 ± 0.18 | 3.59 ± 0.32 | 17.0 | exact / exact to float16 |
    | resnet18 | 0.1 | 44.8 MB | 13.3% | 8.3% | 2.22 ± 0.24 | 2.50 ± 0.34 | 2.71 ± 0.29 | 15.5 | exact / exact to float16 |
    | resnet18 | 0.01 | 44.8 MB | 4.3% | 3.8% | 2.15 ± 0.17 | 1.90 ± 0.13 | 1.96 ± 0.36 | 13.2 | exact / exact to float16 |
    | resnet34 | 0.5 | 85.3 MB | 53.2% | 28.2% | 4.11 ± 1.15 | 4.46 ± 0.71 | 5.07 ± 1.11 | 30.2 | exact / exact to float16 |
    | resnet34 | 0.1 | 85.3 MB | 13.3% | 8.3% | 2.24 ± 0.35 | 2.32 ± 0.28 | 2.60 ± 0.23 | 15.2 | exact / exact to float16 |
    | resnet34 | 0.01 | 85.3 MB | 4.3% | 3.8% | 2.69 ± 0.15 | 2.42 ± 0.15 | 2.42 ± 0.30 | 20.2 | exact / exact to float16 |

Reading a sparse file costs about what reading the dense one does (0.9x-1.5x here: unpacking the
masks against reading 4x-20x fewer bytes); building the model dominates both. The export time
includes loading the checkpoint and the check (read back, two forward passes at 224 px).

The size follows from the format: a layer at density d takes d x 4 bytes (float32 values) or
d x 2 bytes (float16) plus 1/8 byte of mask per weight, against 4 bytes dense, so density 0.1 is
13.1% (8.1%) of the dense weights, and below density 1/32 the mask dominates (3.1% at least).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

DENSITIES = (0.5, 0.1, 0.01)
VALUES = ("float32", "float16")


def pruned_checkpoint(work: Path, arch: str, density: float, seed: int) -> Path:
    """``{arch}-d{density}/pruned.pt``: random weights pruned by magnitude; reused if present."""
    import torchvision

    from fairgrape_cli import stages

    folder = work / f"{arch}-d{density}"
    if (folder / "pruned.pt").exists():
        return folder / "pruned.pt"
    folder.mkdir(parents=True, exist_ok=True)
    dense = work / f"{arch}.pt"
    if not dense.exists():
        torch.manual_seed(seed)
        model = torchvision.models.get_model(arch, num_classes=7)
        torch.save({"arch": arch, "num_classes": 7, "classes": [f"class{i}" for i in range(7)],
                    "state_dict": model.state_dict(), "image_size": 224}, dense)  # fmt: skip
    stages.prune(rate=1 - density, model=stages.ModelSource(dense), method="magnitude",
                 output=folder / "masks.safetensors")  # fmt: skip
    return folder / "pruned.pt"


def round_trip(dense: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor], values: str) -> bool:
    """Every tensor back exactly: bit for bit (float32), or as the weight rounded to float16."""
    for name, tensor in dense.items():
        expected = tensor
        if values == "float16" and tensor.is_floating_point() and tensor.ndim > 1 and (tensor == 0).any():
            expected = tensor.half().to(tensor.dtype)
        expected = torch.where(expected == 0, torch.zeros_like(expected), expected)  # -0.0 -> +0.0
        got = loaded[name]
        if expected.dtype == torch.float32:
            expected, got = expected.view(torch.int32), got.view(torch.int32)
        if not torch.equal(got, expected):
            return False
    return True


def load_seconds(paths: list[Path], repeat: int) -> list[list[float]]:
    from fairgrape_cli.io.checkpoints import load_checkpoint

    times: list[list[float]] = [[] for _ in paths]
    for _ in range(repeat):  # interleaved, so a burst of load from elsewhere hits every file
        for index, path in enumerate(paths):
            started = time.perf_counter()
            load_checkpoint(path)
            times[index].append(time.perf_counter() - started)
    return times


def measure(work: Path, arch: str, density: float, repeat: int, seed: int) -> dict:
    from fairgrape_cli import stages
    from fairgrape_cli.io.checkpoints import load_checkpoint
    from fairgrape_cli.method.masks import nonzero_density

    dense = pruned_checkpoint(work, arch, density, seed)
    outputs, export_seconds = {}, {}
    for values in VALUES:
        outputs[values] = dense.with_name(f"pruned.{values}.safetensors")
        summary = stages.export(
            model=stages.ModelSource(dense), output=outputs[values], values=values, batch_size=1
        )
        export_seconds[values] = summary.seconds
    reference = load_checkpoint(dense)
    weights = reference.model.state_dict()
    exact = {values: round_trip(weights, load_checkpoint(path).model.state_dict(), values)
             for values, path in outputs.items()}  # fmt: skip
    times = load_seconds([dense, *outputs.values()], repeat)
    dense_bytes = dense.stat().st_size
    return {
        "arch": arch, "density": density,
        "measured_density": nonzero_density(dict(
            (name, weight) for name, weight in weights.items() if weight.ndim > 1 and weight.is_floating_point())),
        "dense_mb": dense_bytes / 1e6,
        **{f"ratio_{v}": outputs[v].stat().st_size / dense_bytes for v in VALUES},
        **{f"exact_{v}": exact[v] for v in VALUES},
        **{f"export_s_{v}": export_seconds[v] for v in VALUES},
        "load_dense": times[0], **{f"load_{v}": times[i + 1] for i, v in enumerate(VALUES)},
    }  # fmt: skip


def _mean_sd(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| model | density | dense pruned.pt | sparse f32 | sparse f16 | load dense (s) | load f32 (s) "
        "| load f16 (s) | export f32 (s) | round trip f32 / f16 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['arch']} | {row['density']} | {row['dense_mb']:.1f} MB | {row['ratio_float32']:.1%} "
            f"| {row['ratio_float16']:.1%} | {_mean_sd(row['load_dense'])} | {_mean_sd(row['load_float32'])} "
            f"| {_mean_sd(row['load_float16'])} | {row['export_s_float32']:.1f} "
            f"| {'exact' if row['exact_float32'] else 'DIFFERS'} / "
            f"{'exact to float16' if row['exact_float16'] else 'DIFFERS'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", nargs="+", default=["resnet18", "resnet34"])
    parser.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES))
    parser.add_argument("--repeat", type=int, default=5, help="loads of each file (interleaved)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the checkpoints [default: a temporary one]"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for arch in args.archs:
            for density in args.densities:
                rows.append(measure(work, arch, density, args.repeat, args.seed))
                print(f"done {arch} d={density} (load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"load average at the end: {' '.join(f'{value:.1f}' for value in os.getloadavg())}")
    print(table(rows))


if __name__ == "__main__":
    main()
