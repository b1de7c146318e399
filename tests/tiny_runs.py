"""Run folders for the tests of ``fairgrape run``: sample_configs/tiny.yaml with changes, beside a
copy of the model and a link to the data, as the config expects."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

TINY = Path(__file__).resolve().parent.parent / "sample_configs" / "tiny.yaml"
# one iteration of magnitude pruning and no fine-tuning: the cheapest whole run
QUICK = dict(method="magnitude", rate=0.5, keep_per_iter=None, finetune__epochs=0, final_finetune__epochs=0)


def run_folder(parent: Path, name: str, model: Path, data: Path, **changes) -> Path:
    """``parent/name/config.yaml`` with ``changes`` (``section__option`` for a section's option);
    its output is ``parent/name/run``. Folders made side by side record the same relative paths."""
    folder = parent / name
    folder.mkdir()
    config = folder / "config.yaml"
    shutil.copy(TINY, config)
    edit_config(config, **changes)
    shutil.copy(model, folder / "model.pt")
    (folder / "data").symlink_to(data, target_is_directory=True)
    return config


def edit_config(config: Path, **changes) -> None:
    """Rewrite the run config ``config`` with ``changes`` (``section__option`` for a section's option)."""
    settings = yaml.safe_load(config.read_text())
    for key, value in changes.items():
        section, _, option = key.partition("__")
        if option:
            settings.setdefault(section, {})[option] = value
        else:
            settings[key] = value
    config.write_text(yaml.safe_dump(settings))
