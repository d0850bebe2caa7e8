"""Dataset files that lie: each is refused in one line naming the file, never read as something
else (a label 200 making a 201-class model, a short header dropping images, a swapped file)."""

from __future__ import annotations

import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from test_datasets import (  # no_cifar_checksums: a fixture
    TRAIN_SIZE,
    no_cifar_checksums,  # noqa: F401
    write_cifar10,
    write_idx,
    write_mnist,
)
from test_training import run_cli

from zoo.errors import ConfigError
from zoo.run.training import build_run

RAW = Path("data/MNIST/raw")
IMAGES, LABELS = RAW / "train-images-idx3-ubyte", RAW / "train-labels-idx1-ubyte"
CIFAR = Path("data/cifar-10-batches-py")


def refusal(make_config, data: str) -> str:
    """The one line build_run refuses this data with."""
    with pytest.raises(ConfigError) as raised:
        build_run(make_config(f"data={data}", "data.val_size=8"))
    message = str(raised.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def labels_with(value: int) -> np.ndarray:
    labels = np.arange(TRAIN_SIZE, dtype=np.uint8) % 10
    labels[5] = value
    return labels


def idx_header(*shape: int, magic: bytes = b"\0\0\x08") -> bytes:
    return magic + bytes([len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


MNIST_LIES = {
    "label out of range": (
        lambda root: write_idx(root / LABELS, labels_with(200)),
        r"train-labels-idx1-ubyte: label 200 \(example 5\) is not one of the 10 classes 0-9",
    ),
    "header counts more than the file holds": (
        lambda root: (root / IMAGES).write_bytes((root / IMAGES).read_bytes()[:-784]),
        r"train-images-idx3-ubyte: its header counts 48 images of 28x28 .* \(truncated\)",
    ),
    "bytes beyond the header's count": (
        lambda root: (root / IMAGES).write_bytes((root / IMAGES).read_bytes() + bytes(784)),
        r"train-images-idx3-ubyte: its header counts 48 images .* \(extra data\)",
    ),
    "images and labels of other counts": (
        lambda root: write_idx(root / LABELS, labels_with(1)[:40]),
        r"train-images-idx3-ubyte holds 48 images but .*train-labels-idx1-ubyte 40 labels",
    ),
    "a wrong magic number": (
        lambda root: (root / IMAGES).write_bytes(b"\x12\x34" + (root / IMAGES).read_bytes()[2:]),
        r"train-images-idx3-ubyte is not an IDX file of bytes: its magic number is 12340803",
    ),
    "floats, not bytes": (
        lambda root: (root / LABELS).write_bytes(idx_header(48, magic=b"\0\0\x0d") + bytes(192)),
        r"train-labels-idx1-ubyte is not an IDX file of bytes",
    ),
    "a header only": (
        lambda root: (root / IMAGES).write_bytes(idx_header(48, 28, 28)),
        r"its header counts 48 images of 28x28 \(37632 bytes\) but 0 bytes follow it",
    ),
    "a header counting nothing": (
        lambda root: (root / IMAGES).write_bytes(idx_header(0, 28, 28)),
        r"train-images-idx3-ubyte holds no images \(its header counts 0\)",
    ),
    "an empty file": (
        lambda root: (root / LABELS).write_bytes(b""),
        r"train-labels-idx1-ubyte is not an IDX file of bytes: its magic number is missing",
    ),
    "images and labels swapped": (
        lambda root: (root / IMAGES).write_bytes((root / LABELS).read_bytes()),
        r"train-images-idx3-ubyte holds 1-dimensional data where images .* swapped\?",
    ),
}


@pytest.mark.parametrize("lie", MNIST_LIES)
def test_mnist_files_that_lie_are_refused_naming_the_file(make_config, tmp_path, lie):
    write_mnist(tmp_path / "data", "MNIST")
    corrupt, expected = MNIST_LIES[lie]
    corrupt(tmp_path)
    message = refusal(make_config, "mnist")
    assert re.search(expected, message), message


def test_an_unreadable_file_is_not_called_missing(make_config, tmp_path, monkeypatch):
    """Root reads through chmod 000, so the denial comes from a patched open."""
    write_mnist(tmp_path / "data", "MNIST")
    real_open = Path.open

    def denied(self: Path, *args, **kwargs):
        if self.name == LABELS.name:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    message = refusal(make_config, "mnist")
    assert message == f"cannot read {tmp_path / LABELS}: Permission denied"


def rewrite_batch(root: Path, name: str, change) -> None:
    path = root / CIFAR / name
    batch = pickle.loads(path.read_bytes())
    change(batch)
    path.write_bytes(pickle.dumps(batch))


CIFAR_LIES = {
    "a label out of range": (
        lambda root: rewrite_batch(root, "data_batch_2", lambda b: b["labels"].__setitem__(3, 10)),
        r"data_batch_2: label 10 \(example 3\) is not one of the 10 classes 0-9",
    ),
    "no data key": (
        lambda root: rewrite_batch(root, "data_batch_3", lambda b: b.pop("data")),
        r"data_batch_3 is not a CIFAR-10 batch: it lacks 'data' or 'labels'",
    ),
    "rows that are not 3x32x32 images": (
        lambda root: rewrite_batch(
            root, "test_batch", lambda b: b.__setitem__("data", b["data"][:, :1024])
        ),
        r"test_batch: 'data' is uint8 of shape \[16, 1024\], not uint8 rows of 3072 bytes",
    ),
    "fewer labels than images": (
        lambda root: rewrite_batch(root, "data_batch_1", lambda b: b["labels"].pop()),
        r"data_batch_1 holds 10 images but 9 labels",
    ),
    "not a pickle": (
        lambda root: (root / CIFAR / "data_batch_5").write_bytes(b"not a pickle at all"),
        r"data_batch_5 is not a CIFAR-10 batch \(not a pickled dict\)",
    ),
    "a meta file without class names": (
        lambda root: (root / CIFAR / "batches.meta").write_bytes(pickle.dumps({"names": []})),
        r"batches.meta is not CIFAR-10's meta file: it lacks a 'label_names' list",
    ),
}


@pytest.mark.usefixtures("no_cifar_checksums")
@pytest.mark.parametrize("lie", CIFAR_LIES)
def test_cifar_batches_that_lie_are_refused_naming_the_file(make_config, tmp_path, lie):
    write_cifar10(tmp_path / "data")
    corrupt, expected = CIFAR_LIES[lie]
    corrupt(tmp_path)
    message = refusal(make_config, "cifar10")
    assert re.search(expected, message), message


@pytest.mark.slow
def test_a_cifar_file_with_another_checksum_is_named_not_called_missing(tmp_path):
    """With torchvision's real md5 table, files that are not the release's are named, in a
    subprocess through train.py: exit 2, one error line, no traceback, nothing written."""
    write_cifar10(tmp_path / "data")
    result = run_cli("data=cifar10", f"paths.data_dir={tmp_path / 'data'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{tmp_path / CIFAR / 'data_batch_1'} is not CIFAR-10's data_batch_1" in errors[0]
    assert "md5 differs" in errors[0] and "not found" not in errors[0]
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_cli_refuses_a_label_that_would_make_a_201_class_model(tmp_path):
    write_mnist(tmp_path / "data", "MNIST")
    write_idx(tmp_path / LABELS, labels_with(200))
    result = run_cli("data=mnist", f"paths.data_dir={tmp_path / 'data'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: {tmp_path / LABELS}: label 200 (example 5)" in result.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


GOOD = "9\t( ( ( [MAX 2 ) 9 ) ] )\n"


def test_text_and_listops_files_that_cannot_be_read_are_named(make_config, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world " * 100)
    release = {name: tmp_path / name for name in ("train_d20s.tsv", "test_d20s.tsv")}
    release["train_d20s.tsv"].write_bytes(b"9\t( ( ( [MAX 2 ) 9 ) ] )\n\xff\n")
    release["test_d20s.tsv"].write_text(GOOD)
    with pytest.raises(ConfigError, match=r"train_d20s.tsv is not UTF-8 text \(byte 25\)$"):
        build_run(make_config("data=listops", f"data.data_dir={tmp_path}"))
    release["train_d20s.tsv"].write_text(GOOD)
    with pytest.raises(ConfigError, match=r"train_d20s.tsv holds 1 example; training needs 2"):
        build_run(make_config("data=listops", f"data.data_dir={tmp_path}"))
    real_open = Path.open

    def denied(self: Path, *args, **kwargs):
        if self == corpus:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(ConfigError, match=f"^cannot read {corpus}: Permission denied$"):
        build_run(make_config("data=text", f"data.path={corpus}"))
