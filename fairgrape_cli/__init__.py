"""fairgrape: prune image classifiers without making them unfair.

The stages are importable library functions returning data (``fairgrape_cli.stages``); the
``fairgrape`` command is a thin layer over them. Torch is imported lazily so the CLI starts fast.
"""

__version__ = "0.1.0"

__all__ = ["score", "prune", "finetune", "report", "__version__"]


def __getattr__(name: str):
    if name in {"score", "prune", "finetune", "report"}:
        from . import stages

        return getattr(stages, name)
    raise AttributeError(name)
