"""Dataset files checked against what they say: IDX headers against the bytes that follow, label
ranges, image and label counts, CIFAR-10 batches' keys and shapes. Each failure is one
DataFileError line naming the file; a missing file stays a FileNotFoundError."""

from __future__ import annotations

import math
import pickle
import stat
import struct
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one MNIST-style files use
CIFAR_ROW = 3 * 32 * 32  # one image: R, G, B planes of 32x32 bytes


class DataFileError(ValueError):
    """A dataset file that cannot be read or does not hold what it says."""


def read_bytes(path: Path, limit: int = -1) -> bytes:
    """The file's first `limit` bytes (all by default); unreadable -> one DataFileError line
    (a missing file stays a FileNotFoundError). Only regular files are opened: a pipe would
    block and a device never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise
    except OSError as error:
        raise DataFileError(f"cannot read {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
        raise DataFileError(f"cannot read {path}: it is {what}")
    try:
        with path.open("rb") as file:
            return file.read(limit)
    except FileNotFoundError:
        raise
    except OSError as error:  # PermissionError, IsADirectoryError, EIO, ...
        raise DataFileError(f"cannot read {path}: {error.strerror or error}") from None


def idx_shape(path: Path, dims: int, what: str) -> tuple[int, ...]:
    """The sizes an IDX file of bytes declares (count first), checked against its magic number
    and the bytes that follow its header: none missing, none left over."""
    header = read_bytes(path, 4 + 4 * dims)
    if len(header) < 4 or header[:2] != b"\0\0" or header[2] != IDX_UBYTE:
        magic = header[:4].hex() or "missing"
        raise DataFileError(
            f"{path} is not an IDX file of bytes: its magic number is {magic}, not 0000080{dims}"
        )
    if header[3] != dims:
        raise DataFileError(
            f"{path} holds {header[3]}-dimensional data where {what} ({dims} dimensions) belong; "
            "are the images and labels files swapped?"
        )
    if len(header) < 4 + 4 * dims:
        raise DataFileError(f"{path} is cut short inside its header")
    shape = struct.unpack(f">{dims}I", header[4:])
    if shape[0] == 0:
        raise DataFileError(f"{path} holds no {what} (its header counts 0)")
    size = path.stat().st_size - len(header)
    expected = math.prod(shape)
    if size != expected:
        item = f" of {'x'.join(map(str, shape[1:]))}" if dims > 1 else ""
        raise DataFileError(
            f"{path}: its header counts {shape[0]} {what}{item} ({expected} bytes) but "
            f"{size} bytes follow it ({'truncated' if size < expected else 'extra data'})"
        )
    return shape


def check_pair(images: Path, labels: Path) -> None:
    """An IDX images file and its labels file: each as its header says, and of one count."""
    count, labels_count = idx_shape(images, 3, "images")[0], idx_shape(labels, 1, "labels")[0]
    if count != labels_count:
        raise DataFileError(f"{images} holds {count} images but {labels} {labels_count} labels")


def check_labels(labels: Tensor | list[int], classes: int, path: Path | str) -> None:
    """Every label a class index 0..classes-1, else one line naming the first that is not."""
    values = np.asarray(labels)
    if values.dtype.kind not in "iu":
        raise DataFileError(f"{path}: its labels are {values.dtype}, not integers")
    outside = np.flatnonzero((values < 0) | (values >= classes))
    if len(outside):
        first = outside[0]
        raise DataFileError(
            f"{path}: label {values[first]} (example {first}) is not one of the {classes} "
            f"classes 0-{classes - 1}"
        )


def cifar_batch(path: Path) -> dict[str, Any]:
    """A CIFAR-10 batch file (a pickled dict), read as torchvision reads it; call only on a file
    that passed its checksum (or one you wrote)."""
    try:
        entry = pickle.loads(read_bytes(path), encoding="latin1")  # trusted: see the docstring
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError):
        raise DataFileError(f"{path} is not a CIFAR-10 batch (not a pickled dict)") from None
    if not isinstance(entry, dict):
        raise DataFileError(f"{path} is not a CIFAR-10 batch (not a pickled dict)")
    return entry


def check_cifar_batch(path: Path, classes: int) -> int:
    """A CIFAR-10 batch's number of images, after checking its keys, shapes and labels."""
    entry = cifar_batch(path)
    data, labels = entry.get("data"), entry.get("labels", entry.get("fine_labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataFileError(f"{path} is not a CIFAR-10 batch: it lacks 'data' or 'labels'")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW:
        raise DataFileError(
            f"{path}: 'data' is {data.dtype} of shape {list(data.shape)}, not uint8 rows of "
            f"{CIFAR_ROW} bytes (3x32x32 images)"
        )
    if not len(data):
        raise DataFileError(f"{path} holds no images")
    if len(labels) != len(data):
        raise DataFileError(f"{path} holds {len(data)} images but {len(labels)} labels")
    check_labels(labels, classes, path)
    return len(data)
