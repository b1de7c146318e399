"""fairgrape's Python API: prune image classifiers without making them unfair.

    import fairgrape

    fairgrape.score(model="model.pt", data="data/", groups="race", output="importance.safetensors")
    pruned = fairgrape.prune(rate=0.9, importance="importance.safetensors", output="masks.safetensors")

Each function is the command of the same name as a function, with keyword arguments and a typed
result; see ``fairgrape_cli.api`` for the parameters every function shares and README.md
("Python API") for a whole example. The command line is ``fairgrape`` (``fairgrape_cli.cli``).
"""

from fairgrape_cli import __version__
from fairgrape_cli.api import *  # noqa: F403 - the API, as its __all__ names it
from fairgrape_cli.api import __all__ as _api

__all__ = [*_api, "__version__"]
