"""Dataclasses that are read from and written to JSON in the exact shape of fairgrape's files.

A :class:`Record` is a dataclass whose fields are the keys of a JSON object, in order. Written
back, a record gives the same keys in the same order with the same values, so a file read and
written again is unchanged byte for byte:

- a key a file lacks stays absent while its field is None (older files, optional sections);
- ``omit_if_none`` fields are written only when they hold a value;
- keys this version does not know are kept (``extra``) and written after the known ones;
- a field may hold a record (``nested``), a list of records (``nested(many=True)``), or a record
  whose keys sit at this level of the JSON object (``nested(flatten=True)``).

Adding an optional field to a file is one line: ``name: T | None = optional()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")


def optional(*, omit_if_none: bool = False) -> Any:
    """A field that may be None (written as null, or left out with ``omit_if_none``)."""
    return field(default=None, metadata={"omit_if_none": omit_if_none})


def nested(record: type[Record], *, many: bool = False, flatten: bool = False, when_none: str | None = None) -> Any:
    """A field holding a ``record`` (``many``: a list of them; ``flatten``: its keys at this
    level, an empty record by default). ``when_none``: None if the field is required, else it
    is None by default and then written as ``"null"`` or left out (``"omit"``)."""
    metadata = {"record": record, "many": many, "flatten": flatten, "omit_if_none": when_none == "omit"}
    if flatten:
        return field(default_factory=record, metadata=metadata)
    if when_none is not None:
        return field(default=None, metadata=metadata)
    return field(metadata=metadata)


@dataclass
class Record:
    """Base of the records; see the module's docstring for how they map to JSON."""

    absent: frozenset[str] = field(default=frozenset(), kw_only=True, repr=False, compare=False, metadata={"json": False})
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False, metadata={"json": False})

    @classmethod
    def json_fields(cls) -> list[Field]:
        """The fields that are keys of the JSON object, in order."""
        return [item for item in fields(cls) if item.metadata.get("json", True)]

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON object it is written as (ready for ``json.dumps``)."""
        out: dict[str, Any] = {}
        for item in self.json_fields():
            value = getattr(self, item.name)
            if value is None and (item.name in self.absent or item.metadata.get("omit_if_none")):
                continue
            if item.metadata.get("flatten"):
                out.update(value.to_dict() if value is not None else {})
            elif item.metadata.get("record") is not None and value is not None:
                out[item.name] = [entry.to_dict() for entry in value] if item.metadata["many"] else value.to_dict()
            else:
                out[item.name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """The record a JSON object describes (its shape already checked by the file's reader)."""
        values, absent, used = {}, set(), set()
        for item in cls.json_fields():
            record = item.metadata.get("record")
            if item.metadata.get("flatten"):
                sub = {key.name: data[key.name] for key in record.json_fields() if key.name in data}
                values[item.name] = record.from_dict(sub)
                used |= set(sub)
            elif item.name in data:
                used.add(item.name)
                value = data[item.name]
                if record is not None and value is not None:
                    value = [record.from_dict(entry) for entry in value] if item.metadata["many"] else record.from_dict(value)
                values[item.name] = value
            else:
                absent.add(item.name)
                values[item.name] = None
        extra = {key: value for key, value in data.items() if key not in used}
        return cls(**values, absent=frozenset(absent), extra=extra)
