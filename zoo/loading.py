"""Reading checkpoints safely: plain data only (weights_only), one clear line when it fails.
`torch.load` is called here and nowhere else."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from zoo.errors import CheckpointError, first_line


@contextmanager
def checkpoint_errors(path: str | Path) -> Iterator[None]:
    """Turn torch's long loading errors for `path` into one CheckpointError line."""
    try:
        yield
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except pickle.UnpicklingError as error:
        message = str(error)
        if "global" in message.lower():  # torch's weights-only unpickler met a class or function
            raise CheckpointError(
                f"refusing to load {path}: it holds objects other than plain data (tensors, "
                "numbers, strings), which could run code; load only checkpoints you trust"
            ) from None
        detail = message.partition("WeightsUnpickler error:")[2].strip() or message
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a checkpoint, or corrupt ({first_line(detail)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated or corrupt ({first_line(str(error))})"
        ) from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint as plain data on the CPU; never runs code stored in the file."""
    with checkpoint_errors(path):
        return torch.load(path, map_location="cpu", weights_only=True)
