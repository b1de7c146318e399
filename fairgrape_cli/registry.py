"""Named definitions of one kind, chosen by a flag: criteria, objectives, quota rules, export
formats... Each kind is one ``Registry``; each definition is registered once, by name, and a name
the registry does not hold is refused in one line that lists the names it does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .errors import InputError

T = TypeVar("T")
F = TypeVar("F", bound=Callable)


class Registry(dict[str, T]):
    """Definitions by name, in the order they were registered.

    A plain dict for code that lists or reads them; :meth:`add` (or :meth:`decorator`) registers
    one, :meth:`choose` looks up the one a user named with ``flag``.

    Parameters
    ----------
    flag : str
        How a user names a definition (``--method``), for the message about an unknown name.
    """

    def __init__(self, flag: str) -> None:
        super().__init__()
        self.flag = flag

    def add(self, name: str, definition: T) -> T:
        """Register ``definition`` under ``name``; a name registered twice is a bug (ValueError)."""
        if name in self:
            raise ValueError(f"{self.flag} {name!r} is registered twice")
        self[name] = definition
        return definition

    def decorator(self, name: str, build: Callable[[F], T]) -> Callable[[F], F]:
        """A decorator that registers ``build(function)`` under ``name`` and returns the function
        unchanged (for definitions made around one function: a criterion, a quota rule)."""

        def register(function: F) -> F:
            self.add(name, build(function))
            return function

        return register

    def choose(self, name: str) -> T:
        """The definition named ``name``; InputError naming the flag and the choices otherwise."""
        try:
            return self[name]
        except KeyError:
            raise InputError(f"{self.flag} {name}: choose one of {', '.join(self)}") from None
