"""fairgrape: prune image classifiers without making them unfair.

``import fairgrape`` (or ``fairgrape_cli``) gives the Python API (``api``): ``score``, ``prune``,
``finetune``, ``report``, ``run``, ``data_prune``, ``export`` and ``quantize``, each with keyword arguments and
a typed result.

The package reads top to bottom as the data flows; each layer imports only the layers below it:
``cli`` + ``commands`` (flags, rendering) and ``api`` (the same, as functions) -> ``flows``
(chained stages) -> ``stages`` (one per stage: resolve inputs, call the method, write artifacts)
-> ``method`` (the mathematics) and ``render`` (tables, HTML) -> ``io`` (files). ``errors``,
``registry``, ``devices``, ``distributed`` (the torchrun runtime) and ``_progress`` are the
foundations every layer may use. Torch is imported lazily so the CLI starts fast.
"""

__version__ = "0.3.0"

_API = ("score", "prune", "finetune", "report", "run", "data_prune", "export", "quantize")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    """The API's functions, imported when first used (importing them loads torch)."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
