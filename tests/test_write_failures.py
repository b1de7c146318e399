"""Writing that fails (no space left, a file too large, permission denied, a read-only folder)
ends with exit 1 and one line naming the file and the reason, not "a bug", and leaves the
previous files or none: no half of a file, no temporary file, no stage output without its pair.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import signal
from pathlib import Path

import pytest

from fairgrape_cli.errors import OutputError
from fairgrape_cli.flows.config import load_config
from fairgrape_cli.flows.pipeline import run_schedule
from fairgrape_cli.io.files import all_or_none, atomic_output, write_text_atomically

from tiny_runs import QUICK, run_folder


def _one_line_failure(result, *fragments: str) -> str:
    assert result.code == 1, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot write "), result.err
    assert "bug" not in lines[0] and "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith(".tmp")]


@contextlib.contextmanager
def _files_longer_than(limit: int):
    """The kernel refuses to grow any file of this process past ``limit`` bytes (EFBIG), in
    every writer alike (Python's, torch's): a real failure in the middle of a write."""
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, do not kill
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_write_refused_mid_file_leaves_the_previous_pair(tmp_path, cli, tiny_model_path):
    """The masks (17 kB) fit, the pruned checkpoint (78 kB) does not: neither is replaced."""
    (tmp_path / "masks.safetensors").write_bytes(b"previous masks")
    (tmp_path / "pruned.pt").write_bytes(b"previous checkpoint")
    with _files_longer_than(40_000):
        result = cli("prune", tiny_model_path, "--method", "magnitude", "--rate", "0.5", "-q", cwd=tmp_path)
    _one_line_failure(result, "pruned.pt", os.strerror(errno.EFBIG))
    assert (tmp_path / "masks.safetensors").read_bytes() == b"previous masks"
    assert (tmp_path / "pruned.pt").read_bytes() == b"previous checkpoint"
    assert not _temporaries(tmp_path)


def _disk_full_for(name: str, monkeypatch) -> None:
    """Writing the temporary file of ``name`` stops halfway with ENOSPC, as on a full disk."""
    write_text = Path.write_text

    def filling(self, text, *args, **kwargs):
        if self.name.startswith(f".{name}."):
            write_text(self, text[: len(text) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", filling)


@pytest.mark.parametrize("name,reruns", [("run-state.json", "evaluate-00"), ("report.json", "report")])
def test_run_with_a_full_disk_fails_cleanly_and_resumes(tmp_path, cli, tiny_model_path, biased_data, monkeypatch, name, reruns):
    config = run_folder(tmp_path, "r", tiny_model_path, biased_data, **QUICK)
    output = config.parent / "run"
    with monkeypatch.context() as patch:
        _disk_full_for(name, patch)
        result = cli("run", config, "-q")
    _one_line_failure(result, str(output / name), "No space left on device")
    assert not (output / name).exists() and not _temporaries(output) and not (output / "run.lock").exists()
    if name == "report.json":  # every stage before the report was recorded
        assert "evaluate-final" in json.loads((output / "run-state.json").read_text())["stages"]

    resumed = run_schedule(load_config(config))  # space freed
    assert resumed.ran[0] == reruns and (output / "report.json").is_file()


@pytest.mark.parametrize(
    "code,reason", [(errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system")]
)
def test_a_folder_that_cannot_be_written(tmp_path, cli, tiny_model_path, biased_data, monkeypatch, code, reason):
    """The kernel's answer for a folder without write permission or on a read-only mount
    (simulated at os.open: a chmod does not stop root, and mounting needs root)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_open = os.open

    def refusing(path, flags, *args, **kwargs):
        if Path(path).parent == locked and flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    result = cli("prune", tiny_model_path, "--method", "magnitude", "--rate", "0.5", "-o", locked / "masks.safetensors", "-q", cwd=tmp_path)
    _one_line_failure(result, str(locked / "masks.safetensors"), reason)

    config = run_folder(tmp_path, "r", tiny_model_path, biased_data, **QUICK, output=str(locked))
    _one_line_failure(cli("run", config, "-q"), str(locked / "run.lock"), reason)
    assert list(locked.iterdir()) == []


def test_all_or_none_keeps_the_previous_files_when_one_write_fails(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text("old a")
    with pytest.raises(OutputError, match=r"cannot write .*b\.json: No space left on device"):
        with all_or_none():
            write_text_atomically(first, "new a")
            with atomic_output(second) as tmp:
                tmp.write_text("half of b")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert first.read_text() == "old a" and not second.exists() and sorted(tmp_path.iterdir()) == [first]
    with all_or_none():
        write_text_atomically(first, "new a")
        write_text_atomically(second, "new b")
    assert first.read_text() == "new a" and second.read_text() == "new b"
