"""How the commands' help screens name their parameters: the command and group classes of the app.

Typer 0.29's rich help prints every option's type in angle brackets, so a flag shows ``<bool>``
although it takes no value, and its usage line writes required arguments in braces
(``{model} {data}``). Here flags show no placeholder, and arguments are named in capitals as
click and most command-line tools do (``MODEL DATA``, ``[MODEL]``, ``REPORTS...``), in the usage
line, the Arguments panel and the "Missing argument 'MODEL'" error alike.
"""

from __future__ import annotations

import typer.core


def _name_for_help(params: list) -> list:
    for param in params:
        if param.metavar is not None:
            continue
        if param.param_type_name == "argument":
            param.metavar = param.name.upper() + ("..." if param.nargs != 1 else "")
        elif getattr(param, "is_flag", False):
            param.metavar = ""  # a flag takes no value: no placeholder
    return params


class Command(typer.core.TyperCommand):
    """A command whose help shows flags without ``<bool>`` and arguments as ``MODEL DATA``."""

    def get_params(self, ctx):
        """Click's parameters, named for the help screen."""
        return _name_for_help(super().get_params(ctx))  # includes the --help option made on demand

    def collect_usage_pieces(self, ctx) -> list[str]:
        """The usage line: ``[OPTIONS] MODEL [DATA]``."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(param.metavar if param.required else f"[{param.metavar}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class Group(typer.core.TyperGroup):
    """The root ``fairgrape``: its flags (``--help``, ``--version``) without ``<bool>``."""

    def get_params(self, ctx):
        """Click's parameters, named for the help screen."""
        return _name_for_help(super().get_params(ctx))
