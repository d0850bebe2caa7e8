"""Files the tools write: never over one of their inputs or a checkpoint, never half-written
(a temporary file beside the target, renamed over it once complete)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

CHECKPOINT_SUFFIXES = (".ckpt",)


def check_output(out: str | Path, inputs: Iterable[str | Path] = (), what: str = "out") -> Path:
    """`out` as a Path, or one ValueError line when writing it would destroy something: an
    input of the command (the same file, also through links), a checkpoint, a folder or
    another non-regular file, or a file in a folder that does not exist and cannot be made."""
    destination = Path(out)
    if not str(out).strip():
        raise ValueError(f"{what} is empty; give a file name")
    if destination.is_dir():
        raise ValueError(f"{what}={destination} is a folder; give a file name inside it")
    if destination.exists() or destination.is_symlink():
        mode = destination.lstat().st_mode
        if stat.S_ISLNK(mode):
            raise ValueError(
                f"{what}={destination} is a symbolic link; refusing to write through it"
            )
        if not stat.S_ISREG(mode):
            raise ValueError(f"{what}={destination} is not a regular file; refusing to write it")
        for source in inputs:
            source = Path(source)
            if source.exists() and same_file(source, destination):
                raise ValueError(
                    f"{what}={destination} is this command's input {source}; "
                    "writing it would destroy it: give another file name"
                )
        if destination.suffix in CHECKPOINT_SUFFIXES or destination.parent.name == "checkpoints":
            raise ValueError(
                f"{what}={destination} is an existing checkpoint; refusing to overwrite it"
            )
    return destination


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def write_atomically(destination: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary)` for a temporary file beside `destination` (same suffix, so
    writers that choose a format by it still do), then rename it over `destination`. Any
    failure removes the temporary file and leaves `destination` as it was; an OSError is one
    ValueError line naming the path."""
    partial = destination.with_name(
        f".{destination.stem}.partial-{os.getpid()}{destination.suffix}"
    )
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        os.replace(partial, destination)
    except OSError as error:
        raise ValueError(f"cannot write {destination}: {error.strerror or error}") from None
    finally:
        if partial.exists():
            partial.unlink()
    return destination


def check_regular(path: str | Path, what: str) -> Path:
    """`path` as a Path if it is a regular file (also through a link); else one ValueError line
    saying what it is: missing, a folder, a pipe or device (which would block or never end)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ValueError(f"{what}={path}: no such file") from None
    except OSError as error:
        raise ValueError(f"{what}={path}: {error.strerror or error}") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"{what}={path} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{what}={path} is not a regular file (a pipe, socket or device)")
    return path


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint path that exists as a regular file; else one ValueError line."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no checkpoint at {path}")
    return check_regular(path, "ckpt_path")
