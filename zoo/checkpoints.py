"""Safe checkpoint reading: plain data only (weights_only), one clear line when it fails."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.callbacks import resume_command


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


def check_fits(path: str | Path, model: nn.Module) -> None:
    """One CheckpointError line when the checkpoint's weights do not fit `model` (another
    architecture or size), naming the command that resumes the run that wrote it."""
    checkpoint = read_checkpoint(path)
    saved, current = checkpoint.get("state_dict", {}), model.state_dict()
    mismatch = next((key for key in sorted(saved.keys() | current.keys())
                     if key not in saved or key not in current or saved[key].shape != current[key].shape), None)
    if mismatch is None:
        return
    if mismatch not in current:
        detail = f"{mismatch} is only there"
    elif mismatch not in saved:
        detail = f"{mismatch} is only here"
    else:
        detail = f"{mismatch} is {list(saved[mismatch].shape)} there, {list(current[mismatch].shape)} here"
    overrides = checkpoint.get("zoo_overrides")
    how = (resume_command(Path(path), overrides) if overrides is not None
           else "the overrides of the run that wrote it")
    raise CheckpointError(
        f"cannot resume from {path}: it holds another model or size than this run's "
        f"{type(model).__name__} ({detail}); resume with: {how}"
    )


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path, model: nn.Module) -> str | None:
    """"last" -> <output_dir>/checkpoints/last.ckpt; check that the file loads safely and fits."""
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
    check_fits(ckpt_path, model)
    return str(ckpt_path)
