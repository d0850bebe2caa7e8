"""Safe checkpoint reading: plain data only (weights_only), one clear line when it fails."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or holds more than plain data."""


@contextmanager
def checkpoint_errors(path: str | Path) -> Iterator[None]:
    """Turn torch's long loading errors for `path` into one CheckpointError line."""
    try:
        yield
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise CheckpointError(
                f"refusing to load {path}: it holds objects other than plain data (tensors, "
                "numbers, strings), which could run code; load only checkpoints you trust"
            ) from None
        raise CheckpointError(f"cannot read checkpoint {path}: corrupt ({first_line(error)})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated or corrupt ({first_line(error)})"
        ) from None


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error message."""
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint as plain data on the CPU; never runs code stored in the file."""
    with checkpoint_errors(path):
        return torch.load(path, map_location="cpu", weights_only=True)


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path) -> str | None:
    """"last" -> <output_dir>/checkpoints/last.ckpt; check that the file loads safely."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        path = Path(output_dir) / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise CheckpointError(
                f"nothing to resume: {path} does not exist; pass the interrupted run's folder "
                "as hydra.run.dir=<folder> (with the same overrides)"
            )
        ckpt_path = str(path)
    read_checkpoint(ckpt_path)
    return str(ckpt_path)
