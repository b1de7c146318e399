"""fairgrape demo: the whole story on a generated dataset, no downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _options as opt


def demo_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the data, models and runs.")] = Path(
        "fairgrape-demo"
    ),
    device: opt.Device = "auto",
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """See what fair pruning does in a few minutes, offline.

    Generates a biased image dataset (a majority and a minority group that show their class
    differently), trains a small CNN, prunes it 90% in one step with plain magnitude pruning and
    with FairGRAPE (both with plain fine-tuning), and with the recommended recipe
    (sample_configs/recommended.yaml: magnitude pruning, fine-tuning that repeats the smaller
    group up to the larger and holds each group within 2 points of the dense model), and compares
    the three.

    Re-running reuses what is already in the output folder.

    Example:

        fairgrape demo --output fairgrape-demo
    """
    from dataclasses import replace

    from ..flows.experiment import DEMO_EVIDENCE, DEMO_RECIPES, DEMO_SPEC, RECOMMENDED, run_demo
    from ..render.comparison import render_comparison
    from ._console import progress_display, setup_logging, stage_announcer, stdout

    setup_logging(quiet)
    spec = replace(DEMO_SPEC, device=device)
    with progress_display(quiet) as progress:
        announce = stage_announcer(progress, show_up_to_date=False)
        result = run_demo(output, spec=spec, recipes=DEMO_RECIPES, progress=progress, on_stage=announce)

    stdout.print(render_comparison(result.comparison))
    stdout.print(_explanation(result.comparison, RECOMMENDED.describe()))
    stdout.print(DEMO_EVIDENCE, highlight=False)
    stdout.print(
        f"\nCharts: {result.html}. Which method wins depends on the model and data (README.md, "
        "'What the method does, and its limits'): compare them on yours with "
        "`fairgrape score model.pt data/ --groups COLUMN`, then prune, finetune, report; the demo's "
        f"schedules are {', '.join(map(str, result.configs.values()))}.",
        highlight=False,
    )


def _explanation(comparison: dict, recommended: str) -> str:
    """What the table shows, worded from its own numbers (so it stays true whatever they are)."""
    entries = {entry["label"]: entry for entry in comparison["entries"]}
    plain, fair, recipe = entries["magnitude"], entries["fairgrape"], entries["recommended"]
    lines = [
        f"What to look at: every model keeps {_percent(plain['density'])} of its weights. 'drop' is the "
        "accuracy a group lost against the dense model, and drop_gap the difference between the "
        "groups' drops (the brackets: 95% intervals).",
        f"Plain magnitude pruning lost {_pp(plain['drop_gap'])} more on one group than on the other at "
        f"{plain['accuracy']:.1%} overall accuracy; FairGRAPE {_pp(fair['drop_gap'])} at {fair['accuracy']:.1%}; "
        f"the recommended recipe ({recommended}) {_pp(recipe['drop_gap'])} at {recipe['accuracy']:.1%}.",
    ]
    if None not in (plain["drop_gap"], recipe["drop_gap"]):
        better = recipe["drop_gap"] < plain["drop_gap"]
        lines.append(
            f"Here the recommended recipe {'cut' if better else 'did not cut'} the gap between the groups "
            f"({_pp(recipe['drop_gap'])} against {_pp(plain['drop_gap'])}), at "
            f"{100 * (recipe['accuracy'] - plain['accuracy']):+.1f} points of overall accuracy."
        )
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _pp(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} points"
