"""fairgrape demo: the whole story on a generated dataset, no downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _options as opt


def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the data, models and runs.")] = Path(
        "fairgrape-demo"
    ),
    device: opt.Device = "auto",
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """See what FairGRAPE does in a few minutes, offline.

    Generates a biased image dataset (a majority and a minority group that show their class
    differently), trains a small CNN, prunes it 90% with FairGRAPE and with magnitude pruning
    under the same schedule, and compares the two.

    Re-running reuses what is already in the output folder.

    Example:

        fairgrape demo --output fairgrape-demo
    """
    from dataclasses import replace

    from ..flows.experiment import DEMO_SPEC, run_demo
    from ..render.comparison import render_comparison
    from ._console import progress_display, setup_logging, stage_announcer, stderr, stdout

    setup_logging(quiet)
    spec = replace(DEMO_SPEC, device=device)
    with progress_display(quiet) as progress:
        announce = stage_announcer(progress, show_up_to_date=False)
        if not quiet:
            stderr.print(f"building the dataset and training the dense model in {output} ...")
        result = run_demo(output, spec=spec, progress=progress, on_stage=announce)

    stdout.print(render_comparison(result.comparison))
    stdout.print(_explanation(result.comparison))
    stdout.print(
        f"\nCharts: {result.html}. Which method wins depends on the model and data (README.md, "
        "'What the method does, and its limits'): compare them on yours with "
        "`fairgrape score model.pt data/ --groups COLUMN`, then prune, finetune, report; the demo's "
        f"schedules are {', '.join(map(str, result.configs.values()))}.",
        highlight=False,
    )


def _explanation(comparison: dict) -> str:
    entries = {entry["label"]: entry for entry in comparison["entries"]}
    fair, other = entries["fairgrape"], entries["magnitude"]
    return (
        f"What to look at: both models keep {_percent(fair['density'])} of their weights. 'drop' is "
        "the accuracy a group lost against the dense model, and drop_gap the difference between "
        "the groups' drops:\n"
        f"FairGRAPE lost {_pp(fair['drop_gap'])} more on one group than the other at {fair['accuracy']:.1%} "
        f"overall accuracy; magnitude pruning {_pp(other['drop_gap'])} at {other['accuracy']:.1%}."
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _pp(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} points"
