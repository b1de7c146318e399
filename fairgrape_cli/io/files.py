"""File plumbing shared by every artifact: atomic writes, hashes, recorded paths."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import InputError

_HASH_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic: an
    interrupted stage (error, Ctrl-C, kill) leaves the previous file or none, never half of one.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """``path`` holds ``text`` (UTF-8) afterwards, or its previous content if writing failed."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_path(target: str | os.PathLike, recording_file: str | os.PathLike) -> str:
    """The path of ``target`` as written into ``recording_file``: relative to that file's folder."""
    target_abs = Path(target).resolve()
    base = Path(recording_file).resolve().parent
    try:
        return os.path.relpath(target_abs, base)
    except ValueError:  # different drives on Windows: no relative path exists
        return str(target_abs)


def resolve_recorded(recorded: str, recording_file: str | os.PathLike) -> Path:
    """Inverse of :func:`record_path`: recorded paths are relative to the file that records them."""
    recorded_path = Path(recorded)
    if recorded_path.is_absolute():
        return recorded_path
    return Path(os.path.normpath(Path(recording_file).resolve().parent / recorded_path))


def refuse_overwriting_inputs(
    outputs: Iterable[str | os.PathLike | None], inputs: Iterable[str | os.PathLike | None]
) -> None:
    """Outputs never overwrite inputs: refuse before any work is done."""
    resolved_inputs = {Path(p).resolve(): Path(p) for p in inputs if p is not None}
    for output in outputs:
        if output is None:
            continue
        clash = resolved_inputs.get(Path(output).resolve())
        if clash is not None:
            raise InputError(
                f"output {output} would overwrite the input {clash}; choose another path with -o"
            )


def require_file(path: str | os.PathLike, what: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise InputError(f"{what} {file} does not exist")
    if file.is_dir():
        raise InputError(f"{what} {file} is a directory, expected a file")
    return file
