"""What a run has finished: ``OUTPUT/run-state.json`` records each stage's fingerprint (its
settings and the sha256 of its inputs) and the files it produced, so a rerun skips what is done.

A file deleted on purpose once a later stage superseded it (``keep_artifacts: last``) stays in its
stage's record, marked ``discarded``, with its sha256: the stages after it still fingerprint it,
and its stage counts as done until some stage that must run needs the file again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, first_line
from ..io.files import sha256_file, write_text_atomically

STATE_FILE = "run-state.json"
# The version of run-state.json's layout (and of what its fingerprints mean): a state file of
# another version is refused, never half-trusted. Raise it when a change makes a finished stage's
# record mean something else.
STATE_VERSION = 1


@dataclass
class StageRecord:
    """A finished stage: its fingerprint, its outputs' stamps, its small result."""

    fingerprint: str
    outputs: dict[str, dict[str, Any]]  # relative path -> {"sha256", "size", "mtime_ns"[, "discarded"]}
    result: Any = None  # small JSON data a later stage needs (an evaluation's accuracies)


class RunState:
    """What finished, with which fingerprint, producing which files: OUTPUT/run-state.json."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / STATE_FILE
        self.records: dict[str, StageRecord] = {}
        self.config: str | None = None  # the name of the config file the run was started from
        if self.path.exists():
            self.records, self.config = _read_records(self.path)

    def save(self) -> None:
        """Write run-state.json atomically."""
        data = {
            "version": STATE_VERSION,
            **({"config": self.config} if self.config is not None else {}),
            "stages": {key: record.__dict__ for key, record in self.records.items()},
        }
        write_text_atomically(self.path, json.dumps(data, indent=1) + "\n")

    def up_to_date(self, stage: str, fingerprint: str) -> StageRecord | None:
        """The record of ``stage`` if it finished with this fingerprint and its outputs are unchanged."""
        record = self.records.get(stage)
        if record is None or record.fingerprint != fingerprint:
            return None
        for relative, stamp in record.outputs.items():
            if not stamp.get("discarded") and not self._unchanged(self.directory / relative, stamp):
                return None
        return record

    def discard(self, stage: str) -> list[Path]:
        """Delete the files ``stage`` produced, keeping their record; returns the deleted files.

        The record is saved first: a run stopped in between finds files marked discarded that
        are still there (deleted next time), never files missing without a word.
        """
        record = self.records.get(stage)
        if record is None:
            return []
        paths = [self.directory / relative for relative in record.outputs]
        for stamp in record.outputs.values():
            stamp["discarded"] = True
        self.save()
        deleted = [path for path in paths if path.is_file()]
        for path in deleted:
            path.unlink()
        return deleted

    def producer_of_discarded(self, path: Path) -> str | None:
        """The stage whose discarded output ``path`` was, if it was one."""
        try:
            relative = path.resolve().relative_to(self.directory.resolve()).as_posix()
        except ValueError:
            return None
        for stage, record in self.records.items():
            if record.outputs.get(relative, {}).get("discarded"):
                return stage
        return None

    def forget(self, stage: str) -> None:
        """Drop ``stage``'s record, so that it runs again."""
        if self.records.pop(stage, None) is not None:
            self.save()

    def finish(self, stage: str, fingerprint: str, outputs: list[Path], result: Any = None) -> StageRecord:
        """Record ``stage`` as finished with its outputs' sha256, size and mtime; saves the state."""
        stamps = {}
        for output in outputs:
            stat = output.stat()
            stamps[output.relative_to(self.directory).as_posix()] = {
                "sha256": sha256_file(output), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            }  # fmt: skip
        record = StageRecord(fingerprint, stamps, result)
        self.records[stage] = record
        self.save()
        return record

    @staticmethod
    def _unchanged(path: Path, stamp: dict[str, Any]) -> bool:
        if not path.is_file():
            return False
        stat = path.stat()
        if stat.st_size == stamp["size"] and stat.st_mtime_ns == stamp["mtime_ns"]:
            return True  # cheap check first; hash only when the file was touched
        return stat.st_size == stamp["size"] and sha256_file(path) == stamp["sha256"]


def _read_records(path: Path) -> tuple[dict[str, StageRecord], str | None]:
    """The stages a state file records and the config file it names (none in a state written
    before 0.3); a file that cannot be trusted is refused (InputError)."""
    start_over = (
        f"to start over, delete it (rm {path}; finished stages then rerun) or choose another "
        "output folder (--set output=DIR)"
    )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path} is corrupt ({first_line(error)}); {start_over}") from error
    if not isinstance(data, dict):
        raise InputError(f"{path} is corrupt (not a JSON object); {start_over}")
    version = data.get("version")
    if version != STATE_VERSION:
        found = f"state version {version!r}" if "version" in data else "no state version"
        raise InputError(
            f"{path} was written by another version of fairgrape ({found}; this one reads state "
            f"version {STATE_VERSION}), so its finished stages cannot be resumed; {start_over}"
        )
    try:
        records = {str(key): _record(value) for key, value in data["stages"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        malformed = f"a stage record is malformed: {first_line(error)}"
        raise InputError(f"{path} is corrupt ({malformed}); {start_over}") from error
    config = data.get("config")
    if config is not None and not isinstance(config, str):
        raise InputError(f"{path} is corrupt (its config is not a file name); {start_over}")
    return records, config


def _record(value: Any) -> StageRecord:
    record = StageRecord(**value)
    if not isinstance(record.fingerprint, str) or not isinstance(record.outputs, dict):
        raise ValueError("fingerprint or outputs of the wrong type")
    for stamp in record.outputs.values():
        if not {"sha256", "size", "mtime_ns"} <= set(stamp):
            raise ValueError("an output without its sha256, size and mtime")
    return record



def fingerprint(parts: dict[str, Any]) -> str:
    """The sha256 of ``parts`` as sorted JSON: what a stage's up-to-dateness is decided by."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
