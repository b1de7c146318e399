"""What a run has finished: ``OUTPUT/run-state.json`` records each stage's fingerprint (its
settings and the sha256 of its inputs) and the files it produced, so a rerun skips what is done.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.files import sha256_file, write_text_atomically

log = logging.getLogger("fairgrape")

STATE_FILE = "run-state.json"


@dataclass
class StageRecord:
    fingerprint: str
    outputs: dict[str, dict[str, Any]]  # relative path -> {"sha256", "size", "mtime_ns"}
    result: Any = None  # small JSON data a later stage needs (an evaluation's accuracies)


class RunState:
    """What finished, with which fingerprint, producing which files: OUTPUT/run-state.json."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / STATE_FILE
        self.records: dict[str, StageRecord] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.records = {key: StageRecord(**value) for key, value in data["stages"].items()}
            except (ValueError, KeyError, TypeError):
                log.warning("%s is unreadable; rerunning every stage", self.path)

    def save(self) -> None:
        data = {"stages": {key: record.__dict__ for key, record in self.records.items()}}
        write_text_atomically(self.path, json.dumps(data, indent=1) + "\n")

    def up_to_date(self, stage: str, fingerprint: str) -> StageRecord | None:
        record = self.records.get(stage)
        if record is None or record.fingerprint != fingerprint:
            return None
        for relative, stamp in record.outputs.items():
            if not self._unchanged(self.directory / relative, stamp):
                return None
        return record

    def finish(self, stage: str, fingerprint: str, outputs: list[Path], result: Any = None) -> StageRecord:
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


def fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
