"""Reading checkpoints safely: plain data only (weights_only), one clear line when it fails.
`torch.load` is called here and nowhere else."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

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
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as error:
        # torch's legacy reader on a text file: KeyError (a "magic number" it does not know)
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated or corrupt ({first_line(str(error))})"
        ) from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint as plain data on the CPU; never runs code stored in the file."""
    with checkpoint_errors(path):
        return torch.load(path, map_location="cpu", weights_only=True)


def check_recorded_shapes(
    checkpoint: dict[str, Any], build: Callable[[], nn.Module], path: str | Path
) -> None:
    """Build the model a checkpoint's configs describe on torch's meta device (shapes only, no
    memory) and compare it with the tensors the checkpoint holds: one CheckpointError line when
    a parameter is missing or of another shape, before the real model is allocated (a 5 KB file
    whose config names a layer of 40 billion weights is refused here, not after allocating it).
    A model that cannot be built on the meta device is left to the real build."""
    try:
        with torch.device("meta"):
            expected = build().state_dict()
    except CheckpointError:
        raise
    except Exception:  # noqa: BLE001 - the real build reports its own error
        return
    saved = checkpoint.get("state_dict")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} holds no weights (no state_dict)")
    for key, tensor in expected.items():
        held = saved.get(key)
        if held is None:
            raise CheckpointError(
                f"{path}: its config describes {key}, which it holds no weights for"
            )
        if not isinstance(held, torch.Tensor) or tuple(held.shape) != tuple(tensor.shape):
            shape = list(held.shape) if isinstance(held, torch.Tensor) else type(held).__name__
            raise CheckpointError(
                f"{path}: its config describes {key} of shape {list(tensor.shape)}, but it "
                f"holds {shape}; the file's config and weights disagree (corrupt or edited)"
            )
