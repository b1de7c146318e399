"""Architecture names: which families a name may come from, and building a model from one.

An ``arch`` is one of

- a torchvision classification builder: ``resnet18``, ``mobilenet_v2``, ``vit_b_16``;
- ``timm:NAME``, a model timm's registry knows (``timm:vit_tiny_patch16_224``): the ``timm`` extra;
- ``hf:CLASS``, a Hugging Face ``transformers`` image classifier class
  (``hf:ViTForImageClassification``), built from its config: the ``hf`` extra;
- ``module.path:callable``, a Python factory taking ``num_classes=``.

Constructor arguments travel with the name (``arch_args``, a JSON object: ``{"img_size": 32}`` for
a ViT trained at 32 px; a Hugging Face class's is its whole config) and are passed as keyword
arguments.

Importing a module runs its code, so a name read from a file (a checkpoint, an artifact's
metadata) may only be one of the first three families, or one of fairgrape's own models
(``fairgrape_cli.flows.synthetic:...``): :func:`check_named_by_file` refuses anything else before
it is imported. A ``module.path:callable`` is imported only when the user names it (``--arch``, a
run config's ``arch``) or vouches for the file (``--trust-checkpoint``); one the user names is
also looked for in the current folder, as ``python -m`` would.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InputError, first_line
from .extras import require_package
from .huggingface import HF_PREFIX

TIMM_PREFIX = "timm:"
TORCHVISION_PREFIX = "torchvision.models:"  # the long spelling of a torchvision builder

# Architectures of this package that moved: checkpoints written before the move name the old
# module, and keep loading (they are written back under the new name).
MOVED_ARCHS = {"fairgrape_cli.synthetic:": "fairgrape_cli.flows.synthetic:"}
# fairgrape's own models (the demo's and the tests'): a file may name them, importing them runs
# nothing that is not already fairgrape
OWN_MODULES = ("fairgrape_cli.flows.synthetic",)

# Constructor arguments a file may not pass: they load weights or files (timm's checkpoint_path,
# pretrained configs with URLs), download, or run shipped code; num_classes is fairgrape's own.
FORBIDDEN_ARGS = frozenset({
    "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict", "checkpoint_path",
    "cache_dir", "weights", "num_classes", "trust_remote_code", "auto_map", "_name_or_path",
})  # fmt: skip


def current_arch_name(arch: str | None) -> str | None:
    """``arch`` under its present name (see ``MOVED_ARCHS``)."""
    for old, new in MOVED_ARCHS.items():
        if arch and arch.startswith(old):
            return new + arch[len(old) :]
    return arch


def family(arch: str) -> str:
    """``torchvision``, ``timm``, ``hf``, ``fairgrape`` (this package's own) or ``python``."""
    if arch.startswith(TIMM_PREFIX):
        return "timm"
    if arch.startswith(HF_PREFIX):
        return "hf"
    if arch.startswith(TORCHVISION_PREFIX) or ":" not in arch:
        return "torchvision"
    module = current_arch_name(arch).partition(":")[0]
    return "fairgrape" if module in OWN_MODULES else "python"


def canonical(arch: str) -> str:
    """The name two spellings of one architecture share (moved names, ``torchvision.models:``)."""
    return (current_arch_name(arch) or arch).removeprefix(TORCHVISION_PREFIX)


def check_named_by_file(arch: str, *, source: Path | str, trusted: bool) -> None:
    """Refuse, before importing anything, a ``module.path:callable`` that a file names.

    ``source`` is the file that names it; ``trusted`` is ``--trust-checkpoint``.
    """
    if trusted or family(arch) != "python":
        return
    raise InputError(
        f"{source} names the architecture {arch!r}, a Python module; fairgrape imports a module only "
        f"when you name it yourself (importing runs its code). If you trust the file, pass "
        f"--arch {arch} (or --trust-checkpoint); a file may name a torchvision model, timm:NAME or hf:CLASS"
    )


# ------------------------------------------------------------------------------ arch arguments


def check_arch_args(value: Any, *, source: str) -> dict[str, Any]:
    """``value`` as constructor arguments: a JSON object of plain values, no forbidden key."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise InputError(f"{source}: arch_args is not JSON ({error.msg})") from error
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise InputError(f"{source}: arch_args must be a JSON object of constructor arguments")
    if not _is_plain(value):
        raise InputError(f"{source}: arch_args may hold numbers, strings, booleans, null, lists and objects only")
    forbidden = sorted(FORBIDDEN_ARGS & set(value))
    if forbidden:
        raise InputError(
            f"{source}: arch_args may not set {', '.join(forbidden)} (fairgrape sets the class count, "
            "loads weights itself and never downloads)"
        )
    return dict(value)


def parse_arch_args(values: Sequence[str] | None) -> dict[str, Any] | None:
    """``--arch-args`` as given: each value a JSON object or ``KEY=VALUE`` (VALUE read as JSON
    when it is, else as a string: ``img_size=32``, ``global_pool=avg``). None when not given."""
    if not values:
        return None
    merged: dict[str, Any] = {}
    for text in values:
        stripped = text.strip()
        if stripped.startswith("{"):
            merged.update(check_arch_args(stripped, source=f"--arch-args {text}"))
            continue
        key, equals, raw = stripped.partition("=")
        if not equals or not key.strip():
            raise InputError(f"--arch-args {text}: expected KEY=VALUE or a JSON object such as '{{\"img_size\": 32}}'")
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            parsed = raw
        merged[key.strip()] = parsed
    return check_arch_args(merged, source="--arch-args")


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_is_plain(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(key, str) and _is_plain(item) for key, item in value.items())
    return False


# ----------------------------------------------------------------------------------- building


def build_model(
    arch: str, num_classes: int, *, arch_args: Mapping[str, Any] | None = None, named_by_user: bool = False
) -> nn.Module:
    """A fresh, randomly initialised ``arch`` with ``num_classes`` outputs.

    ``named_by_user``: the user named ``arch`` (``--arch``), so a ``module.path:callable`` is
    also looked for in the current folder. Whether a file may name ``arch`` is decided before
    (:func:`check_named_by_file`).
    """
    args = dict(arch_args or {})
    kind = family(arch)
    if kind == "timm":
        return _build_timm(arch[len(TIMM_PREFIX) :], num_classes, args)
    if kind == "hf":
        from .huggingface import build_classifier

        return build_classifier(arch[len(HF_PREFIX) :], num_classes, args)
    if kind == "torchvision":
        return _build_torchvision(arch.removeprefix(TORCHVISION_PREFIX), num_classes, args)
    return _build_from_callable(current_arch_name(arch), num_classes, args, search_cwd=named_by_user)


def _build_torchvision(name: str, num_classes: int, args: dict[str, Any]) -> nn.Module:
    import torchvision

    available = set(torchvision.models.list_models(module=torchvision.models))
    if name not in available:
        close = [known for known in sorted(available) if known.startswith(name[:4])][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InputError(
            f"unknown architecture {name!r}: not a torchvision classifier{hint}; timm models are "
            "named timm:NAME, Hugging Face classes hf:CLASS"
        )
    builder = torchvision.models.get_model_builder(name)
    return _call(builder, name, num_classes, {"weights": None, **args})


def _build_timm(name: str, num_classes: int, args: dict[str, Any]) -> nn.Module:
    timm = require_package("timm", f"architecture timm:{name}")
    if not name or not timm.is_model(name):
        close = timm.list_models(f"*{name[:6]}*")[:5] if name else []
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InputError(f"unknown architecture timm:{name}: not in timm's registry{hint}")
    return _call(
        lambda **kwargs: timm.create_model(name, pretrained=False, **kwargs), f"timm:{name}", num_classes, args
    )


def _call(factory, name: str, num_classes: int, args: dict[str, Any]) -> nn.Module:
    try:
        model = factory(num_classes=num_classes, **args)
    except TypeError as error:
        raise InputError(f"architecture {name} does not take these arguments {args}: {first_line(error)}") from error
    except (ValueError, AssertionError, KeyError, RuntimeError) as error:
        raise InputError(f"cannot build architecture {name} with {args or 'its defaults'}: {first_line(error)}") from error
    if not isinstance(model, nn.Module):
        raise InputError(f"architecture {name} returned {type(model).__name__}, not a model")
    return model


def _build_from_callable(arch: str, num_classes: int, args: dict[str, Any], *, search_cwd: bool) -> nn.Module:
    module_name, _, attribute = arch.partition(":")
    try:
        with _current_folder_importable(search_cwd):
            module = importlib.import_module(module_name)
        factory = getattr(module, attribute)
    except (ImportError, AttributeError) as error:
        raise InputError(f"cannot import architecture {arch!r}: {first_line(error)}{_where_looked(module_name, search_cwd)}") from error
    # only call what is clearly a model factory: an nn.Module class or a Python function, never
    # a builtin such as os.system
    is_module_class = inspect.isclass(factory) and issubclass(factory, nn.Module)
    if not (is_module_class or inspect.isfunction(factory)):
        raise InputError(f"architecture {arch!r} is neither an nn.Module class nor a function")
    try:
        model = factory(num_classes=num_classes, **args)
    except TypeError as error:
        raise InputError(
            f"architecture {arch!r} must accept num_classes={', '.join(['', *args]) if args else ''}: "
            f"{first_line(error)}"
        ) from error
    if not isinstance(model, nn.Module):
        raise InputError(f"architecture {arch!r} returned {type(model).__name__}, not a model")
    return model


@contextlib.contextmanager
def _current_folder_importable(enabled: bool) -> Iterator[None]:
    """The current folder first on ``sys.path`` while the user's module is imported (as ``python
    -m`` and ``python -c`` have it; the console script's own folder is there instead)."""
    folder = os.getcwd()
    if not enabled or folder in sys.path or "" in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _where_looked(module_name: str, searched_cwd: bool) -> str:
    top = module_name.split(".")[0]
    if searched_cwd:
        return (
            f" (looked in the current folder {os.getcwd()} and the installed packages: run fairgrape "
            f"in the folder that holds {top}.py, or add that folder to PYTHONPATH)"
        )
    return f" (add the folder that holds {top}.py to PYTHONPATH)"

