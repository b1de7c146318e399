"""fairgrape: prune image classifiers without making them unfair.

The package reads top to bottom as the data flows; each layer imports only the layers below it:
``cli`` + ``commands`` (flags, rendering) -> ``flows`` (chained stages) -> ``stages`` (one per
stage: read inputs, call the method, write artifacts) -> ``method`` (the mathematics) and
``render`` (tables, HTML) -> ``io`` (files). ``errors``, ``devices``, ``distributed`` (the torchrun
runtime) and ``_progress`` are the foundations every layer may use. Torch is imported lazily so
the CLI starts fast.
"""

__version__ = "0.2.0"

__all__ = ["score", "prune", "finetune", "report", "__version__"]


def __getattr__(name: str):
    if name in {"score", "prune", "finetune", "report"}:
        from . import stages

        return getattr(stages, name)
    raise AttributeError(name)
