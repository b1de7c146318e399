"""File plumbing shared by every artifact: atomic writes, hashes, recorded paths."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from ..errors import FairgrapeError, InputError, OutputError

_HASH_CHUNK = 1 << 20
TEMPORARY_SUFFIX = ".tmp"
# what tempfile.mkstemp makes in atomic_output: "." + the final name + "." + 8 random characters
_TEMPORARY_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{8}" + re.escape(TEMPORARY_SUFFIX))


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic: an
    interrupted stage (error, Ctrl-C, kill) leaves the previous file or none, never half of one.
    A failed write (no space left, no permission, a read-only folder) removes the temporary file
    and raises :class:`OutputError` naming ``path`` and the reason.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=TEMPORARY_SUFFIX, dir=final.parent)
    except OSError as error:
        raise OutputError(cannot_write(final, error)) from error
    os.close(fd)
    tmp = Path(tmp_name)
    group = _together.get()
    try:
        yield tmp
        # mkstemp makes 0600, and a writer may replace the file: outputs are ordinary files,
        # readable as the umask allows
        os.chmod(tmp, 0o666 & ~_current_umask())
        if group is not None:
            group.append((tmp, final))  # renamed when the whole group succeeds
        else:
            os.replace(tmp, final)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        cause = _os_error(error)
        if cause is not None:
            raise OutputError(cannot_write(final, cause)) from error
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; put it in place of ``path`` only if the
    block succeeds (as :func:`atomic_output` does for a file; inside ``all_or_none`` too).

    A folder already at ``path`` is moved aside, the new one renamed in, the old one removed: an
    interruption between the two renames leaves the old folder under a hidden temporary name.
    """
    final = Path(path)
    if final.exists() and not final.is_dir():
        raise OutputError(f"cannot write the folder {final}: a file of that name is in the way")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=TEMPORARY_SUFFIX, dir=final.parent))
    except OSError as error:
        raise OutputError(cannot_write(final, error)) from error
    group = _together.get()
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_current_umask())
        if group is not None:
            group.append((tmp, final))
        else:
            _put_in_place(tmp, final)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        cause = _os_error(error)
        if cause is not None:
            raise OutputError(cannot_write(final, cause)) from error
        raise


def _put_in_place(tmp: Path, final: Path) -> None:
    """``os.replace``, for a folder over a folder too (moved aside first, then removed)."""
    if not (tmp.is_dir() and final.is_dir()):
        os.replace(tmp, final)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=TEMPORARY_SUFFIX, dir=final.parent))
    os.replace(final, aside / final.name)
    os.replace(tmp, final)
    shutil.rmtree(aside, ignore_errors=True)


# the files of an ``all_or_none`` block: (temporary, final) pairs, renamed when the block succeeds
_together: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "fairgrape_outputs_together", default=None
)


@contextlib.contextmanager
def all_or_none() -> Iterator[None]:
    """The ``atomic_output`` files written in this block appear together when it succeeds, or
    none of them (the previous files stay) when it fails: a stage that writes two files (masks
    and the checkpoint that names them) never leaves one without the other after a full disk.
    A kill between the final renames can still leave the first without the second.
    """
    pending: list[tuple[Path, Path]] = []
    token = _together.set(pending)
    try:
        yield
    except BaseException:
        _remove_temporaries(pending)
        raise
    finally:
        _together.reset(token)
    for index, (tmp, final) in enumerate(pending):
        try:
            _put_in_place(tmp, final)
        except OSError as error:
            _remove_temporaries(pending[index:])
            raise OutputError(cannot_write(final, error)) from error


def _remove_temporaries(pending: list[tuple[Path, Path]]) -> None:
    for tmp, _ in pending:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()


def cannot_write(path: Path, error: OSError) -> str:
    """One line: which file could not be written and why (the OS's words, e.g. "No space left")."""
    reason = error.strerror or str(error) or type(error).__name__
    named = error.filename
    other = Path(named) if isinstance(named, (str, os.PathLike)) else None
    if other is not None and other != path and not _is_temporary_of(other, path):
        reason = f"{other}: {reason}"  # e.g. the folder that could not be made, or a copy's source
    return f"cannot write {path}: {reason}"


def _is_temporary_of(candidate: Path, path: Path) -> bool:
    return candidate.parent == path.parent and candidate.name.startswith(f".{path.name}.")


_RUST_OS_ERROR = re.compile(r"os error (\d+)")


def _os_error(error: BaseException) -> OSError | None:
    """The operating system's error behind a failed write, if there is one: an ``OSError``, one
    that a library's own error was raised from (torch's writer turns a failed ``write`` into a
    RuntimeError whose context is the OSError), or the "(os error 28)" Rust-backed writers put
    in their messages."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, FairgrapeError):
        if isinstance(seen, OSError):
            return seen
        found = _RUST_OS_ERROR.search(str(seen))
        if found is not None:
            number = int(found.group(1))
            return OSError(number, os.strerror(number))
        seen = seen.__cause__ or seen.__context__
    return None


def remove_leftover_temporaries(folders: Iterable[str | os.PathLike]) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folders`` (not below them).

    Only for folders the caller alone writes (``run`` holds its lock): another writer's
    temporary file would look the same.
    """
    removed = []
    for folder in folders:
        for candidate in Path(folder).glob(f".*{TEMPORARY_SUFFIX}"):
            if _TEMPORARY_NAME.fullmatch(candidate.name) and candidate.is_file():
                with contextlib.suppress(FileNotFoundError):
                    candidate.unlink()
                    removed.append(candidate)
    return removed


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """``path`` holds ``text`` (UTF-8) afterwards, or its previous content if writing failed."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in chunks."""
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
    """``path`` as a Path, refused (naming ``what``) when it is not a file."""
    file = Path(path)
    if not file.exists():
        raise InputError(f"{what} {file} does not exist")
    if file.is_dir():
        raise InputError(f"{what} {file} is a directory, expected a file")
    return file


_SAFETENSORS_DTYPES = {
    "bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "int32": "I32", "int64": "I64",
    "float16": "F16", "bfloat16": "BF16", "float32": "F32", "float64": "F64",
}  # fmt: skip


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, str]) -> None:
    """Write a safetensors file whose bytes depend only on its contents.

    ``safetensors.torch.save_file`` orders the header's entries by hash (its metadata is a Rust
    HashMap), so the same masks written twice differed byte for byte. Here the header lists the
    metadata and the tensors in sorted order; the format is the same (8-byte little-endian
    header length, JSON header padded with spaces to 8 bytes, the tensors' bytes in order).
    """
    names = sorted(tensors)
    header: dict = {"__metadata__": {key: metadata[key] for key in sorted(metadata)}} if metadata else {}
    arrays, offset = [], 0
    for name in names:
        tensor = tensors[name].detach().cpu().contiguous()
        data = tensor.reshape(-1).view(_byte_dtype()).numpy()  # little-endian, as every torch CPU build
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[str(tensor.dtype).removeprefix("torch.")],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + data.nbytes],
        }
        arrays.append(data)
        offset += data.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        for data in arrays:
            handle.write(memoryview(data))


def _byte_dtype():
    import torch

    return torch.uint8
