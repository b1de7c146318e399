"""Coverage of the report's 95% intervals, by simulation (issue 26 item 4, issue 28 item 8).

A report gives every per-group number and every disparity metric a 95% interval, and a CI gate
may act on its ends (``--fail-if 'drop_gap.hi>0.05'``). This study draws group-labelled
predictions from known rates, computes each interval the way a method would, and counts how
often the interval holds the true value, for:

- ``percentile``: the percentile bootstrap fairgrape 0.2 used (images resampled within each
  group, paired with the baseline; 1000 resamples);
- ``basic``: the basic (reverse percentile) bootstrap of the same resamples, ``2 t - q``;
- ``bc``: the bias-corrected percentile bootstrap (percentiles shifted by the share of
  resamples below the point value);
- ``score``: ``fairgrape_cli.method.intervals``: Wilson score intervals per group, MOVER for
  differences, and for a disparity metric its bounds over the per-group intervals taken together
  at the Sidak-adjusted level.

Families (each with every group size below and every true gap):

- ``accuracy``: a single-label model and its baseline; per group the baseline is right on 92%,
  the model loses ``2% + gap * s_g`` of the images and gains 2% (so flips both ways), ``s_g``
  from 1 (the first group, the smallest where sizes differ) to 0. True accuracy_gap = drop_gap =
  gap. Metrics: group accuracy, baseline accuracy, drop and flip rate; overall accuracy and drop;
  accuracy_gap, worst_group_accuracy, drop_std, drop_gap, worst_group_flip_rate.
- ``attributes``: a three-attribute head (the score of an image: the fraction of its attributes
  right), each attribute as in ``accuracy``, an image's attributes correlated (half the images
  easier on all three, half harder). Metrics: the accuracy ones above (no flips).
- ``errors``: a binary target, 40% positives; per group TPR ``0.85 - gap * s_g`` and FPR
  ``0.2 - gap * s_g / 2``. True equalized_odds_difference = gap, demographic_parity_difference
  = 0.7 gap. Metrics: group TPR, FPR, selection rate, balanced accuracy; both differences.

Group sizes: 2 x 40, 2 x 1000, 4 x 300, 4 groups of 30/150/600/3000, 8 x 60. Gaps 0, 0.02, 0.05,
0.10, 0.20.

    nice -n 10 python benchmarks/intervals.py --replicates 1000 --resamples 1000 --seed 0

RESULTS (the command above; 1000 replicates a cell, so a coverage is within about +-1.4 points
of its true value; "min": the worst of the 25 cells of size x gap, "mean": their mean; "width":
the mean width in points; "excl": how often the interval excludes its own point value):

| metric | percentile min / mean, width, excl | basic min / mean, width, excl | bc min / mean, width, excl | score min / mean, width, excl |
|---|---|---|---|---|
| group accuracy | 91.7 / 94.6, 9.3, 0.0% | 89.0 / 93.7, 9.3, 0.0% | 93.5 / 95.0, 9.4, 0.0% | 93.6 / 95.1, 9.6, 0.0% |
| group baseline accuracy | 82.8 / 93.3, 7.4, 0.0% | 82.7 / 91.2, 7.4, 0.0% | 92.0 / 94.4, 7.5, 0.0% | 94.1 / 95.3, 7.9, 0.0% |
| group drop | 77.3 / 92.9, 8.1, 0.0% | 90.5 / 94.1, 8.1, 0.0% | 75.3 / 92.4, 8.1, 0.0% | 94.1 / 95.8, 9.4, 0.0% |
| overall accuracy | 93.0 / 94.9, 4.6, 0.0% | 90.5 / 94.6, 4.6, 0.0% | 93.3 / 95.0, 4.6, 0.0% | 93.5 / 95.3, 4.7, 0.0% |
| overall drop | 91.6 / 94.4, 4.0, 0.0% | 92.4 / 94.7, 4.0, 0.0% | 90.1 / 94.3, 4.0, 0.0% | 93.7 / 95.5, 4.4, 0.0% |
| accuracy_gap | 0.0 / 69.7, 12.0, 0.7% | 73.5 / 88.0, 12.0, 0.7% | 0.0 / 73.4, 10.1, 0.5% | 93.9 / 97.9, 17.2, 0.0% |
| worst_group_accuracy | 9.8 / 84.7, 10.7, 0.0% | 81.9 / 92.5, 10.7, 0.0% | 53.8 / 89.3, 9.7, 0.0% | 94.6 / 98.2, 15.5, 0.0% |
| drop_std | 0.0 / 70.1, 4.4, 0.8% | 63.9 / 89.1, 4.4, 0.8% | 0.0 / 74.1, 3.8, 0.7% | 99.5 / 99.9, 9.2, 0.0% |
| drop_gap | 0.0 / 72.0, 10.9, 0.5% | 72.2 / 89.6, 10.9, 0.5% | 0.0 / 74.5, 9.3, 0.4% | 93.7 / 98.3, 17.0, 0.0% |
| group flip rate | 87.8 / 93.5, 9.7, 0.0% | 69.8 / 89.2, 9.7, 0.0% | 90.7 / 94.3, 9.9, 0.0% | 94.3 / 95.5, 10.4, 0.0% |
| worst_group_flip_rate | 7.5 / 83.2, 12.1, 0.0% | 83.4 / 92.0, 12.1, 0.0% | 45.8 / 88.0, 11.1, 0.0% | 92.6 / 97.8, 18.0, 0.0% |
| group TPR | 90.7 / 93.2, 20.9, 0.0% | 75.1 / 88.8, 20.9, 0.0% | 90.5 / 93.8, 21.4, 0.0% | 94.4 / 95.3, 20.9, 0.0% |
| group FPR | 91.8 / 93.8, 17.1, 0.0% | 82.1 / 91.0, 17.1, 0.0% | 92.0 / 94.4, 17.3, 0.0% | 94.3 / 95.3, 17.1, 0.0% |
| group selection rate | 93.5 / 94.9, 17.3, 0.0% | 92.7 / 94.4, 17.3, 0.0% | 93.7 / 95.0, 17.4, 0.0% | 94.3 / 94.9, 17.0, 0.0% |
| group balanced accuracy | 92.5 / 94.0, 13.9, 0.0% | 88.5 / 92.5, 13.9, 0.0% | 93.7 / 94.4, 14.0, 0.0% | 92.9 / 94.8, 13.7, 0.0% |
| equalized_odds_difference | 0.0 / 39.8, 24.2, 6.0% | 55.7 / 83.4, 24.2, 6.0% | 0.0 / 49.2, 16.4, 5.7% | 94.3 / 98.4, 37.3, 0.0% |
| demographic_parity_difference | 0.0 / 54.8, 20.2, 1.4% | 67.7 / 84.7, 20.2, 1.4% | 0.0 / 63.3, 15.1, 1.0% | 93.8 / 97.5, 25.8, 0.0% |

| metric | score: largest miss above | largest miss below |
|---|---|---|
| group accuracy | 4.0% | 2.9% |
| group baseline accuracy | 5.0% | 3.0% |
| group drop | 3.3% | 3.3% |
| overall accuracy | 3.4% | 3.4% |
| overall drop | 3.5% | 3.1% |
| accuracy_gap | 3.5% | 4.6% |
| worst_group_accuracy | 5.4% | 1.6% |
| drop_std | 0.3% | 0.5% |
| drop_gap | 3.3% | 4.9% |
| group flip rate | 2.9% | 3.9% |
| worst_group_flip_rate | 1.5% | 7.4% |
| group TPR | 4.8% | 2.5% |
| group FPR | 2.9% | 3.5% |
| group selection rate | 3.4% | 2.9% |
| group balanced accuracy | 6.5% | 2.5% |
| equalized_odds_difference | 1.3% | 5.7% |
| demographic_parity_difference | 2.9% | 6.2% |

Read: only ``score`` keeps its coverage near 95% in every cell; the bootstrap intervals of a
spread, minimum or maximum cover nothing (0.0%) where groups are alike and large (their resamples
all lie on one side of the truth), and they exclude their own point value in 0.4% to 6% of
replicates (mean over cells). ``score`` pays for it in width: its disparity intervals are 1.3 to
2.1 times as wide as the percentile bootstrap's, and mostly conservative (mean coverage 97-100%). Where it falls short, it does
so by little: a worst cell of 92.6% (worst_group_flip_rate's lower end with 8 groups of 60 and
6% flips, all alike: Wilson's lower end is high for a handful of events), 92.9% (balanced
accuracy's upper end with 16 positives). The gate ends: drop_gap's upper end is below the truth
at most 3.3% of the time (2.5% is nominal), worst_group_accuracy's lower end above it at most
1.6%. Run time: about 17 minutes on two busy cores.

Not run by CI; ``tests/test_interval_coverage.py`` runs a seeded few-second version.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fairgrape_cli.method import intervals as iv  # noqa: E402

CONFIDENCE = 0.95
SIZES = {
    "2x40": [40, 40],
    "2x1000": [1000, 1000],
    "4x300": [300] * 4,
    "4 mixed": [30, 150, 600, 3000],
    "8x60": [60] * 8,
}
GAPS = [0.0, 0.02, 0.05, 0.10, 0.20]
METHODS = ("percentile", "basic", "bc", "score")


# --------------------------------------------------------------------------------- families


@dataclass
class Family:
    """Image types (cells) with per-group probabilities; metrics as functions of counts."""

    name: str
    probabilities: np.ndarray  # [G, K]
    statistics: callable  # counts [..., G, K] -> {metric: [...] or [..., G]}
    score_intervals: callable  # counts [R, G, K] -> {metric: (low, high)}
    per_group: frozenset  # metrics with one value per group


def _shares(sizes: list[int]) -> np.ndarray:
    return np.linspace(1.0, 0.0, len(sizes))


def _accuracy_cells(gap: float, sizes: list[int]) -> np.ndarray:
    """Per group the probabilities of (model right, baseline right): 11, 10, 01, 00."""
    baseline, gained = 0.92, 0.02
    lost = 0.02 + gained + gap * _shares(sizes)
    return np.stack([baseline - lost, np.full_like(lost, gained), lost, 1 - baseline - gained + 0 * lost], axis=1)


ACC_MODEL = np.array([1.0, 1.0, 0.0, 0.0])
ACC_BASE = np.array([1.0, 0.0, 1.0, 0.0])


def _spread(values):
    return values.max(axis=-1) - values.min(axis=-1)


def _accuracy_statistics(model: np.ndarray, base: np.ndarray, flips: np.ndarray | None):
    def statistics(counts: np.ndarray) -> dict:
        n = counts.sum(-1)
        accuracy, baseline = counts @ model / n, counts @ base / n
        drop = baseline - accuracy
        total = n.sum(-1)
        out = {
            "group accuracy": accuracy,
            "group baseline accuracy": baseline,
            "group drop": drop,
            "overall accuracy": (counts @ model).sum(-1) / total,
            "overall drop": ((counts @ base).sum(-1) - (counts @ model).sum(-1)) / total,
            "accuracy_gap": _spread(accuracy),
            "worst_group_accuracy": accuracy.min(-1),
            "drop_std": drop.std(-1),
            "drop_gap": _spread(drop),
        }
        if flips is not None:
            flip_rate = counts @ flips / n
            out["group flip rate"] = flip_rate
            out["worst_group_flip_rate"] = flip_rate.max(-1)
        return out

    return statistics


def _rate(counts: np.ndarray, scores: np.ndarray, most: float, axis_groups: bool = True) -> iv.Rate:
    n = counts.sum(-1)
    value = counts @ scores / n
    binary = bool(np.isin(scores, (0.0, 1.0)).all())
    variance = None if binary else np.maximum(counts @ scores**2 / n - value**2, 0.0)
    return iv.Rate(value, n, variance, most=most)


def _accuracy_score_intervals(model: np.ndarray, base: np.ndarray, flips: np.ndarray | None, most: float):
    def intervals(counts: np.ndarray) -> dict:
        c = CONFIDENCE
        accuracy, baseline = _rate(counts, model, most), _rate(counts, base, most)
        n = counts.sum(-1)
        covariance = counts @ (model * base) / n - accuracy.value * baseline.value
        spread_m = np.sqrt(np.maximum(counts @ model**2 / n - accuracy.value**2, 0))
        spread_b = np.sqrt(np.maximum(counts @ base**2 / n - baseline.value**2, 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            correlation = np.where((spread_m > 0) & (spread_b > 0), covariance / (spread_m * spread_b), 0.0)
        drop = iv.PairedRates(baseline, accuracy, correlation)
        pooled = counts.sum(-2)
        all_model, all_base = _rate(pooled, model, most), _rate(pooled, base, most)
        pn = pooled.sum(-1)
        pcov = pooled @ (model * base) / pn - all_model.value * all_base.value
        psm = np.sqrt(np.maximum(pooled @ model**2 / pn - all_model.value**2, 0))
        psb = np.sqrt(np.maximum(pooled @ base**2 / pn - all_base.value**2, 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            pcorr = np.where((psm > 0) & (psb > 0), pcov / (psm * psb), 0.0)
        out = {
            "group accuracy": accuracy.interval(c),
            "group baseline accuracy": baseline.interval(c),
            "group drop": drop.interval(c),
            "overall accuracy": all_model.interval(c),
            "overall drop": iv.PairedRates(all_base, all_model, pcorr).interval(c),
            "accuracy_gap": iv.spread_interval(accuracy, confidence=c),
            "worst_group_accuracy": iv.min_interval(accuracy, confidence=c),
            "drop_std": iv.std_interval(drop, confidence=c),
            "drop_gap": iv.spread_interval(drop, confidence=c),
        }
        if flips is not None:
            flip_rate = _rate(counts, flips, most)
            out["group flip rate"] = flip_rate.interval(c)
            out["worst_group_flip_rate"] = iv.max_interval(flip_rate, confidence=c)
        return out

    return intervals


ACCURACY_GROUP_METRICS = frozenset({"group accuracy", "group baseline accuracy", "group drop", "group flip rate"})


def accuracy_family(gap: float, sizes: list[int]) -> Family:
    flips = np.abs(ACC_MODEL - ACC_BASE)
    return Family(
        "accuracy", _accuracy_cells(gap, sizes), _accuracy_statistics(ACC_MODEL, ACC_BASE, flips),
        _accuracy_score_intervals(ACC_MODEL, ACC_BASE, flips, 1.0), ACCURACY_GROUP_METRICS,
    )  # fmt: skip


ATTRIBUTES = 3


def attributes_family(gap: float, sizes: list[int]) -> Family:
    """Cells: (attributes the model got right, the baseline's) of 3, 16 of them; an image is
    easier or harder on all its attributes at once (probability mass moved between 11 and 00)."""
    cells = _accuracy_cells(gap, sizes)  # [G, 4] per attribute
    shift = 0.8 * np.minimum(cells[:, 0], cells[:, 3])
    direction = np.array([1.0, 0.0, 0.0, -1.0])
    per_kind = [cells + shift[:, None] * direction, cells - shift[:, None] * direction]
    combos = list(itertools.product(range(4), repeat=ATTRIBUTES))
    probabilities = np.zeros((len(sizes), (ATTRIBUTES + 1) ** 2))
    for kind in per_kind:
        for combo in combos:
            k_model = int(sum(ACC_MODEL[c] for c in combo))
            k_base = int(sum(ACC_BASE[c] for c in combo))
            probabilities[:, k_model * (ATTRIBUTES + 1) + k_base] += 0.5 * np.prod(kind[:, list(combo)], axis=1)
    grid = np.array([(m, b) for m in range(ATTRIBUTES + 1) for b in range(ATTRIBUTES + 1)], dtype=float) / ATTRIBUTES
    model, base = grid[:, 0], grid[:, 1]
    return Family(
        "attributes", probabilities, _accuracy_statistics(model, base, None),
        _accuracy_score_intervals(model, base, None, float(ATTRIBUTES)), ACCURACY_GROUP_METRICS,
    )  # fmt: skip


# cells: TP, FN, FP, TN
def _error_statistics(counts: np.ndarray) -> dict:
    tp, fn, fp, tn = (counts[..., k] for k in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.where(tp + fn > 0, tp / (tp + fn), 0.0)  # fairlearn (sklearn) counts an empty rate as 0
        fpr = np.where(fp + tn > 0, fp / (fp + tn), 0.0)
    selection = (tp + fp) / counts.sum(-1)
    return {
        "group TPR": tpr,
        "group FPR": fpr,
        "group selection rate": selection,
        "group balanced accuracy": (tpr + 1 - fpr) / 2,
        "equalized_odds_difference": np.maximum(_spread(tpr), _spread(fpr)),
        "demographic_parity_difference": _spread(selection),
    }


def _error_score_intervals(counts: np.ndarray) -> dict:
    c = CONFIDENCE
    tp, fn, fp, tn = (counts[..., k] for k in range(4))
    positives, negatives = tp + fn, fp + tn
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = iv.Rate(np.where(positives > 0, tp / positives, 0.0), positives)
        fpr = iv.Rate(np.where(negatives > 0, fp / negatives, 0.0), negatives)
    selection = iv.Rate((tp + fp) / counts.sum(-1), counts.sum(-1))
    return {
        "group TPR": tpr.interval(c),
        "group FPR": fpr.interval(c),
        "group selection rate": selection.interval(c),
        "group balanced accuracy": iv.BalancedAccuracy(tpr, fpr).interval(c),
        "equalized_odds_difference": iv.equalized_odds_interval(tpr, fpr, confidence=c),
        "demographic_parity_difference": iv.spread_interval(selection, confidence=c),
    }


def errors_family(gap: float, sizes: list[int]) -> Family:
    prevalence = 0.4
    tpr = 0.85 - gap * _shares(sizes)
    fpr = 0.2 - gap * _shares(sizes) / 2
    probabilities = np.stack(
        [prevalence * tpr, prevalence * (1 - tpr), (1 - prevalence) * fpr, (1 - prevalence) * (1 - fpr)], axis=1
    )
    groups = frozenset({"group TPR", "group FPR", "group selection rate", "group balanced accuracy"})
    return Family("errors", probabilities, _error_statistics, _error_score_intervals, groups)


FAMILIES = {"accuracy": accuracy_family, "attributes": attributes_family, "errors": errors_family}


# --------------------------------------------------------------------------------- methods


def _draw(generator, sizes, probabilities, shape) -> np.ndarray:
    """Counts per group and cell, ``[*shape, G, K]``."""
    return np.stack([generator.multinomial(n, p, size=shape) for n, p in zip(sizes, probabilities)], axis=-2)


def _bootstrap(generator, counts: np.ndarray, resamples: int) -> np.ndarray:
    """Resampled counts ``[B, R, G, K]``: each group's images drawn with replacement."""
    n = counts.sum(-1)  # [R, G]
    out = np.empty((resamples, *counts.shape), dtype=np.int64)
    for g in range(counts.shape[1]):
        out[:, :, g, :] = generator.multinomial(n[:, g], counts[:, g, :] / n[:, g : g + 1], size=(resamples, counts.shape[0]))
    return out


def bootstrap_intervals(point: np.ndarray, resampled: np.ndarray) -> dict:
    """Percentile, basic and bias-corrected intervals of each replicate's statistic (``point``:
    ``[R, ...]``, ``resampled``: ``[B, R, ...]``)."""
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail], axis=0)
    below = (resampled < point).mean(0) + 0.5 * (resampled == point).mean(0)
    normal = NormalDist()
    z0 = np.vectorize(lambda share: normal.inv_cdf(min(max(share, 1e-6), 1 - 1e-6)))(below)
    z = normal.inv_cdf(1 - tail)
    cdf = np.vectorize(normal.cdf)
    shifted_low, shifted_high = cdf(2 * z0 - z), cdf(2 * z0 + z)
    ordered = np.sort(resampled, axis=0)
    count = resampled.shape[0]

    def at(share):
        index = np.clip(np.round(share * (count - 1)).astype(int), 0, count - 1)
        return np.take_along_axis(ordered, index[None], axis=0)[0]

    return {
        "percentile": (low, high),
        "basic": (2 * point - high, 2 * point - low),
        "bc": (at(shifted_low), at(shifted_high)),
    }


def simulate(family_name: str, size_name: str, gap: float, *, replicates: int, resamples: int, seed: int,
             methods=METHODS, chunk: int = 100) -> dict:  # fmt: skip
    """Coverage, width and exclusion of the own value, per metric and method, of one cell."""
    sizes = SIZES[size_name]
    family = FAMILIES[family_name](gap, sizes)
    generator = np.random.default_rng([seed, list(FAMILIES).index(family_name), list(SIZES).index(size_name),
                                       GAPS.index(gap) if gap in GAPS else 99])  # fmt: skip
    expected = np.array(sizes)[:, None] * family.probabilities
    truth = family.statistics(expected)  # rates of the true probabilities (the counts' expectation)
    tallies: dict = {}
    done = 0
    while done < replicates:
        rows = min(chunk, replicates - done)
        counts = _draw(generator, sizes, family.probabilities, (rows,))
        point = family.statistics(counts)
        found = {}
        if "score" in methods:
            for metric, (low, high) in family.score_intervals(counts).items():
                found.setdefault(metric, {})["score"] = (low, high)
        if set(methods) - {"score"}:
            resampled = family.statistics(_bootstrap(generator, counts, resamples))
            for metric, values in resampled.items():
                for method, pair in bootstrap_intervals(point[metric], values).items():
                    if method in methods:
                        found.setdefault(metric, {})[method] = pair
        for metric, by_method in found.items():
            true = np.broadcast_to(truth[metric], point[metric].shape)
            for method, (low, high) in by_method.items():
                low, high = np.broadcast_to(low, true.shape), np.broadcast_to(high, true.shape)
                tally = tallies.setdefault((metric, method), np.zeros(5))
                eps = 1e-12
                tally += [
                    ((low <= true + eps) & (true - eps <= high)).sum(), (true > high + eps).sum(),
                    (true < low - eps).sum(), (high - low).sum(),
                    ((point[metric] < low - eps) | (point[metric] > high + eps)).sum(),
                ]  # fmt: skip
                tally_n = tallies.setdefault((metric, "n"), {})
                tally_n[method] = tally_n.get(method, 0) + true.size
        done += rows
    result = {}
    for (metric, method), tally in tallies.items():
        if method == "n":
            continue
        count = tallies[(metric, "n")][method]
        result.setdefault(metric, {})[method] = {
            "coverage": tally[0] / count, "miss_above": tally[1] / count, "miss_below": tally[2] / count,
            "width": tally[3] / count, "excludes_value": tally[4] / count,
        }
    return result


# --------------------------------------------------------------------------------- report


def summary_table(cells: list[dict], methods) -> str:
    """Per metric and method: the worst and mean coverage over the cells, mean width, exclusions."""
    metrics: dict[str, dict[str, list]] = {}
    for cell in cells:
        for metric, by_method in cell["result"].items():
            for method, numbers in by_method.items():
                metrics.setdefault(metric, {}).setdefault(method, []).append(numbers)
    header = "| metric | " + " | ".join(f"{m} min / mean, width, excl" for m in methods) + " |"
    lines = [header, "|" + "---|" * (len(methods) + 1)]
    for metric, by_method in metrics.items():
        row = [metric]
        for method in methods:
            numbers = by_method.get(method)
            if not numbers:
                row.append("")
                continue
            coverage = [entry["coverage"] for entry in numbers]
            width = np.mean([entry["width"] for entry in numbers])
            excluded = np.mean([entry["excludes_value"] for entry in numbers])
            row.append(f"{100 * min(coverage):.1f} / {100 * np.mean(coverage):.1f}, {100 * width:.1f}, {100 * excluded:.1f}%")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def cell_table(cells: list[dict], metric: str, methods) -> str:
    """One metric's coverage in every cell (size x gap), each method's, with the misses above."""
    lines = ["| family | sizes | gap | " + " | ".join(f"{m} cover (miss above)" for m in methods) + " |",
             "|" + "---|" * (len(methods) + 3)]  # fmt: skip
    for cell in cells:
        numbers = cell["result"].get(metric)
        if not numbers:
            continue
        row = [cell["family"], cell["sizes"], f"{cell['gap']:.2f}"]
        for method in methods:
            entry = numbers.get(method)
            row.append("" if entry is None else f"{100 * entry['coverage']:.1f} ({100 * entry['miss_above']:.1f})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def misses_table(cells: list[dict], method: str) -> str:
    """Per metric, the largest share of ``method``'s intervals that lie below the true value
    (miss above: a gate on ``.hi`` passes wrongly) and above it (miss below), over the cells."""
    metrics: dict[str, list] = {}
    for cell in cells:
        for metric, by_method in cell["result"].items():
            if method in by_method:
                metrics.setdefault(metric, []).append(by_method[method])
    lines = [f"| metric | {method}: largest miss above | largest miss below |", "|---|---|---|"]
    for metric, numbers in metrics.items():
        above = max(entry["miss_above"] for entry in numbers)
        below = max(entry["miss_below"] for entry in numbers)
        lines.append(f"| {metric} | {100 * above:.1f}% | {100 * below:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--gaps", nargs="+", type=float, default=GAPS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", type=Path, help="also write every cell's numbers as JSON")
    parser.add_argument("--tables-from", type=Path, help="print the tables of an --out file instead of simulating")
    parser.add_argument("--detail", nargs="*", default=["drop_gap", "accuracy_gap", "equalized_odds_difference"],
                        help="metrics whose per-cell coverage is printed too")  # fmt: skip
    args = parser.parse_args()

    cells = json.loads(args.tables_from.read_text(encoding="utf-8")) if args.tables_from else []
    start = time.perf_counter()
    for family in args.families if not args.tables_from else ():
        for size_name in args.sizes:
            for gap in args.gaps:
                result = simulate(family, size_name, gap, replicates=args.replicates, resamples=args.resamples,
                                  seed=args.seed, methods=args.methods)  # fmt: skip
                cells.append({"family": family, "sizes": size_name, "gap": gap, "result": result})
                print(f"{family:10s} {size_name:8s} gap {gap:.2f} done ({time.perf_counter() - start:.0f} s)",
                      file=sys.stderr, flush=True)  # fmt: skip
    print(summary_table(cells, args.methods))
    if "score" in args.methods:
        print("\n" + misses_table(cells, "score"))
    for metric in args.detail:
        print(f"\n{metric}, per cell:\n")
        print(cell_table(cells, metric, args.methods))
    if args.out:
        args.out.write_text(json.dumps(cells, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
