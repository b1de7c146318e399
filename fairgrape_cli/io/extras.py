"""Optional dependencies: imported when a model needs them, or one line naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import InputError

EXTRAS = {"timm": "timm", "transformers": "hf"}  # package -> the fairgrape extra that installs it


def require_package(package: str, what: str) -> ModuleType:
    """Import an optional dependency, or say in one line which extra installs it."""
    try:
        return importlib.import_module(package)
    except ImportError as error:
        extra = EXTRAS.get(package, package)
        raise InputError(
            f"{what} needs {package}, which is not installed: pip install 'fairgrape[{extra}]'"
        ) from error
