"""Run configs: the YAML schema of ``fairgrape run`` (one table of options per section), reading
and validating a config with ``--set`` overrides, and the schedule of pruning rates it asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..method.objectives import CONSTRAINT_FORMS, OBJECTIVES, ObjectiveOptions

_FLOAT_SLACK = 1e-9  # 1 - r**i computed in floating point may fall a hair short of the rate


@dataclass(frozen=True)
class Option:
    """One key of a run config: its type, default and allowed values.

    ``fingerprint_default=False``: the key was added after runs were first recorded, and at its
    default it is left out of the fingerprints of the stages that read it, so those runs stay up
    to date (its default must do what the code did before the key existed).
    """

    kind: type | tuple[type, ...]
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] | None = None
    minimum: float | None = None  # the smallest value allowed
    above: float | None = None  # values must be greater than this (lr > 0)
    maximum: float | None = None  # the largest value allowed
    items: Option | None = None  # what each item of a list must be
    fingerprint_default: bool = True


_NAME = Option(str)  # a list item: text


_FINETUNE_OPTIONS = {
    "split": Option(str),
    "val_split": Option(str),
    "batch_size": Option(int, 64, minimum=1),
    "epochs": Option(int, 3, minimum=0),  # 0: no fine-tuning
    "lr": Option(float, 1e-4, above=0),
    "lr_milestones": Option(list, [], items=Option(int, minimum=1)),  # increasing, below epochs
    "lr_gamma": Option(float, 0.1, above=0),
    "augment": Option(bool, True),
    # balanced-constrained with upsample: benchmarks/recipes.py's recipe (README); the paper's sample
    # configs say erm. (Until 0.3 the default was balanced with sampling: the objective and
    # balance_by in every fingerprint rerun those.)
    "objective": Option(str, "balanced-constrained", choices=tuple(OBJECTIVES)),
    "dro_step": Option(float, 0.1, above=0),
    "balance_unit": Option(str, "group", choices=("group", "cell")),
    "balance_by": Option(str, "upsample", choices=("sampling", "upsample", "weights")),
    # added in 0.3 (fingerprint_default=False: runs recorded before them stay up to date)
    # a fraction with constraint_metric accuracy (0.02 = 2 points), any size with loss: _check_levers
    "constraint_bound": Option(float, 0.02, minimum=0, fingerprint_default=False),
    "constraint_metric": Option(str, "accuracy", choices=("accuracy", "loss"), fingerprint_default=False),
    "constraint_form": Option(str, "drop", choices=CONSTRAINT_FORMS, fingerprint_default=False),  # added in 0.3.1
    "multiplier_lr": Option(float, 0.1, above=0, fingerprint_default=False),
    "distill_weight": Option(float, 0.0, minimum=0, maximum=1, fingerprint_default=False),  # 0: no distillation
    "distill_temperature": Option(float, 4.0, above=0, fingerprint_default=False),
    "teacher": Option(str, fingerprint_default=False),  # relative to the config; default: the run's starting model
    "keep_epoch": Option(
        str, "auto", choices=("auto", "last", "accuracy", "worst-group", "worst-group-near-best"), fingerprint_default=False
    ),
    "keep_within": Option(float, 0.01, minimum=0, maximum=1, fingerprint_default=False),
}
# section -> option -> definition; "" is the top level
SCHEMA: dict[str, dict[str, Option]] = {
    "": {
        "model": Option(str, required=True),
        "arch": Option(str),
        "arch_args": Option(dict, fingerprint_default=False),  # constructor arguments of arch (--arch-args)
        "trust_checkpoint": Option(bool, False),
        "data": Option(str, required=True),
        "labels": Option(str),
        "target": Option((str, list)),  # a class column; several binary attributes; or "all"
        "groups": Option((str, list), required=True),
        "image_size": Option(int, minimum=8),
        # magnitude: benchmarks/recipes.py's recipe (README); until 0.3 the default was fairgrape
        "method": Option(str, "magnitude", choices=("fairgrape", "taylor", "magnitude", "random")),
        "rate": Option(float, required=True),
        "keep_per_iter": Option(float),
        "iterations": Option(int, minimum=1),
        "seed": Option(int, 0, minimum=0),
        "output": Option(str),
        "device": Option(str, "auto", choices=("auto", "cpu", "cuda", "mps")),
        "precision": Option(str, "fp32", choices=("fp32", "bf16"), fingerprint_default=False),  # fine-tuning and evaluation
        "workers": Option(int, minimum=0),
        "include": Option(list, [], items=_NAME),
        "exclude": Option(list, [], items=_NAME),
        # leave out images that cannot be read, in every stage (score.skip_bad_images: the same, older)
        "skip_bad_images": Option(bool, False),
        # last: an iteration's files are deleted once the next iteration finished; all: kept
        "keep_artifacts": Option(str, "last", choices=("last", "all")),
    },
    "score": {
        "split": Option(str),
        "batch_size": Option(int, 64, minimum=1),
        "max_batches": Option(int, minimum=1),
        "samples_per_group": Option(int, minimum=1),
        "min_group_size": Option(int, 1, minimum=1),
        "dtype": Option(str, "float32", choices=("float32", "float16", "bfloat16")),
        "skip_bad_images": Option(bool, False),
    },
    "prune": {
        "scope": Option(str, "layer", choices=("layer", "global")),
        "min_layer_density": Option(float, 0.01, minimum=0, maximum=1),
        "granularity": Option(str, "weight", choices=("weight", "channel")),
    },
    "finetune": _FINETUNE_OPTIONS,
    "final_finetune": _FINETUNE_OPTIONS,
    "report": {
        "split": Option(str),
        "batch_size": Option(int, 64, minimum=1),
        "min_group_size": Option(int, 1, minimum=1),
        "bootstrap": Option(int, 1000, minimum=0),  # resamples for intervals: bootstrap (seeded by seed); 0: none
        # how the 95% intervals are computed; score replaced the bootstrap as the default (a run
        # recorded before keeps its report until something else makes the report again)
        "intervals": Option(str, "score", choices=("score", "bootstrap"), fingerprint_default=False),
        "html": Option(bool, False),
    },
    # an optional final stage: only a config that has the section (OPTIONAL_SECTIONS) runs it
    "quantize": {
        "max_group_drop": Option(float, minimum=0, maximum=1),  # none: every layer int8, no bound
        "calibration": Option(str, "minmax", choices=("minmax", "entropy", "percentile")),
        "calibration_split": Option(str),  # default: train, else every row
        "calibration_size": Option(int, 256, minimum=1),
        "split": Option(str),  # the groups' accuracy is checked on it; default: val, else test
        "batch_size": Option(int, 64, minimum=1),
        "min_group_size": Option(int, 1, minimum=1),
        "output": Option(str, "final.int8.onnx"),  # in the run's output folder
    },
}
FINETUNE_SECTIONS = ("finetune", "final_finetune")  # each iteration's fine-tuning, and the last one
# sections whose stage runs only when the config has them (``quantize:`` alone: every default)
OPTIONAL_SECTIONS = ("quantize",)


@dataclass
class RunConfig:
    """A validated run config: top-level settings, sections, and where each value came from."""

    path: Path
    settings: dict[str, Any]  # top-level options, defaults filled in, paths resolved
    sections: dict[str, dict[str, Any]]  # section -> options, defaults filled in
    set_by: dict[str, str] = field(default_factory=dict)  # key -> the --set KEY=VALUE that changed it
    asked: frozenset[str] = frozenset()  # the OPTIONAL_SECTIONS the config has

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def origin(self, key: str) -> str:
        """Where ``key``'s value came from, for messages: ``--set KEY=VALUE`` or the config file."""
        return _Origins(self.path, self.set_by).of(key)

    @property
    def output(self) -> Path:
        """The run's output folder."""
        return Path(self.settings["output"])


def load_config(path: str | Path, *, overrides: Sequence[str] = ()) -> RunConfig:
    """Read and validate a run config; relative paths are relative to the config file.

    ``overrides`` are ``KEY=VALUE`` settings applied on top (``method=magnitude``,
    ``finetune.epochs=5``), values read as YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config {path} does not exist")
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not UTF-8") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}{where}: not valid YAML ({getattr(error, 'problem', error)})") from error
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of settings at the top level")
    origins = _Origins(path)
    for override in overrides:
        origins.set_by[_apply_override(raw, override)] = override

    sections = {}
    settings = _validated(raw, SCHEMA[""], origins, prefix="", allowed_sections=set(SCHEMA) - {""})
    asked = _optional_sections(raw)
    for name in SCHEMA:
        if not name:
            continue
        value = raw.get(name) or {}
        if not isinstance(value, dict):
            raise InputError(f"{origins.of(name)}: '{name}' must be a mapping of {name} options")
        sections[name] = _validated(value, SCHEMA[name], origins, prefix=f"{name}.")

    # an image skipped while scoring must be skipped by fine-tuning and the report too
    settings["skip_bad_images"] = settings["skip_bad_images"] or sections["score"]["skip_bad_images"]
    for key in ("groups", "target"):  # lists of columns, as the command line spells them
        if isinstance(settings[key], list):
            settings[key] = ",".join(str(column) for column in settings[key])
    base = path.resolve().parent
    for key in ("model", "data", "labels"):
        if settings.get(key):
            settings[key] = str(base / settings[key])
    for name in FINETUNE_SECTIONS:
        if sections[name]["teacher"]:
            sections[name]["teacher"] = str(base / sections[name]["teacher"])
            _check_teacher(sections[name], name, origins)
    settings["output"] = str(base / (settings.get("output") or f"runs/{path.stem}"))
    _check_schedule(settings, origins)
    for name in FINETUNE_SECTIONS:
        _check_milestones(sections[name], name, origins)
        _check_levers(sections[name], name, origins)
    _check_quantize_output(sections["quantize"]["output"], origins)
    return RunConfig(path=path, settings=settings, sections=sections, set_by=origins.set_by, asked=asked)


def _optional_sections(raw: dict) -> frozenset[str]:
    """The optional sections the config asks for: present (``quantize:`` alone, a mapping, or
    ``true``), not ``false``; a ``true``/``false`` is then read as no options."""
    asked = set()
    for name in OPTIONAL_SECTIONS:
        if name in raw and raw[name] is not False:
            asked.add(name)
        if isinstance(raw.get(name), bool):
            raw[name] = {}
    return frozenset(asked)


def _check_quantize_output(output: str, origins: _Origins) -> None:
    """The int8 file is one of the run's files: a relative ``.onnx`` path inside its folder."""
    path = Path(output)
    if path.is_absolute() or ".." in path.parts or path.suffix.lower() != ".onnx":
        raise InputError(
            f"{origins.of('quantize.output')}: 'quantize.output' must be an .onnx file name inside the run's "
            f"output folder, got {output!r}"
        )


@dataclass
class _Origins:
    """Where each setting came from, for messages: the config file, or the --set that changed it."""

    path: Path
    set_by: dict[str, str] = field(default_factory=dict)  # "finetune.epochs" -> "finetune.epochs=abc"

    def of(self, key: str) -> str:
        override = self.set_by.get(key)
        return f"--set {override}" if override is not None else str(self.path)


def _apply_override(raw: dict, override: str) -> str:
    """Apply ``KEY=VALUE`` to the raw config; returns the key it set (``finetune.epochs``)."""
    import yaml

    key, separator, text = override.partition("=")
    if not separator or not key.strip():
        raise InputError(f"--set {override!r}: expected KEY=VALUE, e.g. method=magnitude")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    section, _, option = key.strip().rpartition(".")
    if not section:
        raw[option] = value
        return option
    if section not in SCHEMA:
        raise InputError(f"--set {override!r}: unknown section '{section}'")
    if not isinstance(raw.get(section), dict):
        raw[section] = {}
    raw[section][option] = value
    return f"{section}.{option}"


def _validated(
    values: dict, schema: dict[str, Option], origins: _Origins, *, prefix: str, allowed_sections=frozenset()
) -> dict[str, Any]:
    result = {}
    for key in values:
        if key not in schema and key not in allowed_sections:
            import difflib

            close = difflib.get_close_matches(str(key), list(schema) + list(allowed_sections), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise InputError(f"{origins.of(f'{prefix}{key}')}: unknown key '{prefix}{key}'{hint}")
    for key, option in schema.items():
        if key not in values or values[key] is None:
            if option.required:
                raise InputError(f"{origins.of(f'{prefix}{key}')}: missing required key '{prefix}{key}'")
            result[key] = list(option.default) if isinstance(option.default, list) else option.default
            continue
        result[key] = _typed(values[key], option, f"{prefix}{key}", origins.of(f"{prefix}{key}"))
    return result


def _typed(value: Any, option: Option, key: str, where: str) -> Any:
    kinds = option.kind if isinstance(option.kind, tuple) else (option.kind,)
    if float in kinds and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    is_bool = isinstance(value, bool)
    if not isinstance(value, kinds) or (is_bool and bool not in kinds):
        names = " or ".join(kind.__name__ for kind in kinds).replace("str", "text").replace("float", "number")
        raise InputError(f"{where}: '{key}' must be {names}, got {value!r}")
    if option.choices is not None and value not in option.choices:
        raise InputError(f"{where}: '{key}' must be one of {', '.join(option.choices)}, got {value!r}")
    if isinstance(value, (int, float)) and not is_bool:
        _check_range(value, option, key, where)
    if option.items is not None and isinstance(value, list):
        value = [_typed(item, option.items, f"{key}[{i}]", where) for i, item in enumerate(value)]
    return value


def _check_range(value: float, option: Option, key: str, where: str) -> None:
    low, high = option.minimum, option.maximum
    if low is not None and high is not None:
        wanted, fits = f"in [{low:g}, {high:g}]", low <= value <= high
    elif low is not None:
        wanted, fits = f"at least {low:g}", value >= low
    elif option.above is not None:
        wanted = "positive" if option.above == 0 else f"more than {option.above:g}"
        fits = value > option.above
    else:
        return
    if not fits:
        raise InputError(f"{where}: '{key}' must be {wanted}, got {value!r}")


def _check_schedule(settings: dict, origins: _Origins) -> None:
    rate, keep, iterations = settings["rate"], settings["keep_per_iter"], settings["iterations"]
    if not 0.0 < rate < 1.0:
        raise InputError(f"{origins.of('rate')}: 'rate' must be in (0, 1), got {rate}")
    if keep is not None and iterations is not None:
        where = origins.of("iterations") if "iterations" in origins.set_by else origins.of("keep_per_iter")
        raise InputError(f"{where}: set 'keep_per_iter' or 'iterations', not both")
    if keep is not None and not 0.0 < keep < 1.0:
        raise InputError(f"{origins.of('keep_per_iter')}: 'keep_per_iter' must be in (0, 1), got {keep}")


def uses_teacher(*, objective: str, distill_weight: float) -> bool:
    """Whether a fine-tuning section needs a teacher: it distils, or its objective compares with one."""
    return distill_weight > 0 or OBJECTIVES.choose(objective).needs_teacher


def _check_teacher(options: dict, section: str, origins: _Origins) -> None:
    """A teacher that is given must exist and be used (as ``finetune --teacher`` is refused
    when nothing uses it), so neither shows only after the run has evaluated and pruned."""
    key = f"{section}.teacher"
    path = Path(options["teacher"])
    if not uses_teacher(objective=options["objective"], distill_weight=options["distill_weight"]):
        comparing = ", ".join(name for name, objective in OBJECTIVES.items() if objective.needs_teacher)
        raise InputError(
            f"{origins.of(key)}: '{key}' {path}: nothing uses it; set '{section}.distill_weight' (distillation) "
            f"or an objective that compares with it ({comparing})"
        )
    if not path.exists():  # a checkpoint file, or a Hugging Face model folder
        raise InputError(f"{origins.of(key)}: '{key}' {path} does not exist")


def _check_levers(options: dict, section: str, origins: _Origins) -> None:
    """The objective's options as ``finetune`` checks them (``ObjectiveOptions``: a bound that
    depends on the metric, say), its message naming the section's keys instead of the flags."""
    import re

    try:
        ObjectiveOptions(**{item.name: options[item.name] for item in fields(ObjectiveOptions)})
    except InputError as error:
        keys = re.findall(r"--([a-z-]+)", str(error))
        where = origins.of(f"{section}.{keys[0].replace('-', '_')}") if keys else origins.of(section)
        message = re.sub(r"--([a-z-]+)", lambda m: f"'{section}.{m.group(1).replace('-', '_')}'", str(error))
        raise InputError(f"{where}: {message}") from error


def _check_milestones(options: dict, section: str, origins: _Origins) -> None:
    epochs, milestones = options["epochs"], options["lr_milestones"]
    if epochs and (milestones != sorted(set(milestones)) or any(m >= epochs for m in milestones)):
        key = f"{section}.lr_milestones"
        raise InputError(
            f"{origins.of(key)}: '{key}' must be increasing epochs below '{section}.epochs' ({epochs}), "
            f"got {milestones}"
        )


def schedule(rate: float, *, keep_per_iter: float | None = None, iterations: int | None = None) -> list[float]:
    """Cumulative pruning rate of each iteration: ``min(1 - keep**i, rate)`` until ``rate``.

    With ``iterations`` instead of ``keep_per_iter`` the keep fraction is the one that reaches
    ``rate`` in that many equal steps; with neither, one step.
    """
    if keep_per_iter is None:
        steps = iterations or 1
        keep_per_iter = (1.0 - rate) ** (1.0 / steps)
    rates = []
    while not rates or rates[-1] < rate:
        pruned = 1.0 - keep_per_iter ** (len(rates) + 1)
        rates.append(rate if pruned >= rate - _FLOAT_SLACK else pruned)
    return rates
