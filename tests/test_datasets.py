"""MNIST, Fashion-MNIST and CIFAR-10 from small files in their real on-disk formats; no network."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import run_cli
from torchvision import datasets

import zoo
from zoo.data import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule
from zoo.errors import ConfigError, DoesNotFitError
from zoo.run.training import build, build_run, train

TRAIN_SIZE, TEST_SIZE, VAL_SIZE = 48, 16, 8
MODULES = {
    "mnist": MNISTDataModule,
    "fashion_mnist": FashionMNISTDataModule,
    "cifar10": CIFAR10DataModule,
}
SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def random_split(size: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    images = generator.integers(0, 256, (size, *shape), dtype=np.uint8)
    labels = np.arange(size, dtype=np.uint8) % 10  # every class present
    return images, labels


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format: magic (0, 0, type 0x08 = ubyte, number of dims), big-endian sizes, bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.tobytes())


def write_mnist(root: Path, folder: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, as torchvision reads
    them."""
    splits = {
        "train": random_split(TRAIN_SIZE, (28, 28), 1),
        "t10k": random_split(TEST_SIZE, (28, 28), 2),
    }
    for prefix, (images, labels) in splits.items():
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
    return {"train": splits["train"], "test": splits["t10k"]}


def write_cifar10(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """<root>/cifar-10-batches-py/: pickled dicts, rows of 3072 bytes (R, G, B planes of 32x32)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train = random_split(TRAIN_SIZE, (3, 32, 32), 1)
    test = random_split(TEST_SIZE, (3, 32, 32), 2)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    chunks = [(train[0][i::5], train[1][i::5]) for i in range(5)] + [test]
    for name, (images, labels) in zip(names, chunks):
        batch = {
            "batch_label": name,
            "data": images.reshape(len(images), -1),
            "labels": labels.tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": [f"class {i}" for i in range(10)]})
    )
    order = np.concatenate([np.arange(TRAIN_SIZE)[i::5] for i in range(5)])  # batch-file order
    return {"train": (train[0][order], train[1][order]), "test": test}


@pytest.fixture
def no_cifar_checksums(monkeypatch):
    """torchvision checks each CIFAR-10 file's md5 against the real release, which small test
    files cannot match; with md5 None, `check_integrity` checks that the file exists. Only the
    checksum table changes: torchvision's reading code runs as it is."""
    cifar = datasets.CIFAR10
    monkeypatch.setattr(cifar, "train_list", [[name, None] for name, _ in cifar.train_list])
    monkeypatch.setattr(cifar, "test_list", [[name, None] for name, _ in cifar.test_list])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": None})


@pytest.fixture
def write_dataset(tmp_path, no_cifar_checksums):
    """Factory: write_dataset("mnist") -> the arrays written into tmp_path/data."""
    root = tmp_path / "data"

    def write(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if name == "cifar10":
            return write_cifar10(root)
        return write_mnist(root, {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[name])

    return write


@pytest.mark.parametrize("name", MODULES)
def test_real_format_files_load_split_and_normalise(make_config, write_dataset, name):
    written = write_dataset(name)
    config = make_config(f"data={name}", f"data.val_size={VAL_SIZE}", "data.download=true")
    datamodule = build(config.data)  # download=true: files present, so nothing is fetched
    datamodule.setup("fit")
    assert isinstance(datamodule, MODULES[name])
    assert datamodule.spec.input_shape == SHAPES[name] and datamodule.spec.num_outputs == 10
    sizes = {split: len(pair[1]) for split, pair in datamodule.splits.items()}
    assert sizes == {"train": TRAIN_SIZE - VAL_SIZE, "val": VAL_SIZE, "test": TEST_SIZE}
    mean = torch.tensor(datamodule.mean).view(-1, 1, 1)
    std = torch.tensor(datamodule.std).view(-1, 1, 1)

    def pixels(images: torch.Tensor) -> torch.Tensor:  # back from (x / 255 - mean) / std
        return (images * std + mean).mul(255).round().to(torch.uint8)

    test_images, test_labels = datamodule.splits["test"]
    expected = torch.as_tensor(written["test"][0]).view(TEST_SIZE, *SHAPES[name])
    assert test_images.dtype == torch.float32 and test_labels.dtype == torch.long
    torch.testing.assert_close(test_images, (expected.float() / 255 - mean) / std)  # channel first
    assert test_labels.tolist() == written["test"][1].tolist()
    # train + val together are exactly the written training images
    seen = pixels(torch.cat([datamodule.splits["train"][0], datamodule.splits["val"][0]])).flatten(
        1
    )
    original = torch.as_tensor(written["train"][0]).flatten(1)
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, original.tolist()))


def test_train_val_split_is_seeded(make_config, write_dataset):
    write_dataset("mnist")

    def val_images(seed: int) -> list[int]:
        datamodule = build(
            make_config("data=mnist", f"data.val_size={VAL_SIZE}", f"data.seed={seed}").data
        )
        datamodule.setup()
        return datamodule.splits["val"][0].flatten(1).sum(1).tolist()

    assert val_images(0) == val_images(0)
    assert val_images(0) != val_images(1)


def test_both_loaders_give_the_same_batches(make_config, write_dataset):
    write_dataset("cifar10")
    batches = {}
    for loader in ("memory", "dataloader"):
        datamodule = build(
            make_config("data=cifar10", f"data.val_size={VAL_SIZE}", f"data.loader={loader}").data
        )
        datamodule.setup()
        batches[loader] = next(iter(datamodule.val_dataloader()))
    torch.testing.assert_close(batches["memory"], batches["dataloader"])


@pytest.mark.parametrize("model", zoo.list_models())
@pytest.mark.parametrize("name", MODULES)
def test_every_architecture_trains_on_every_dataset(make_config, write_dataset, name, model):
    write_dataset(name)
    config = make_config(
        f"data={name}",
        f"model={model}",
        f"data.val_size={VAL_SIZE}",
        "data.batch_size=8",
        "+trainer.fast_dev_run=true",
    )
    try:
        _, built, _ = build_run(config)
    except DoesNotFitError as error:  # an architecture that does not take images says so
        pytest.skip(f"{model} does not fit {name}: {error}")
    assert built.input_shape == SHAPES[name]
    scores = {k: v for k, v in train(config).items() if k.startswith("test/")}
    assert scores and all(np.isfinite(v) for v in scores.values()), scores  # test/acc, or a GAN's


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10"])
def test_missing_files_fail_with_one_clear_line(make_config, tmp_path, name):
    with pytest.raises(ConfigError) as raised:
        build_run(make_config(f"data={name}"))
    message = str(raised.value)
    assert "\n" not in message and "data.download=true" in message
    assert str((tmp_path / "data").resolve()) in message


def test_cli_missing_files_exit_nonzero_and_say_how_to_download(tmp_path):
    result = run_cli("data=mnist", f"paths.data_dir={tmp_path / 'nothing'}", cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "mnist files not found" in errors[0] and "data.download=true" in errors[0]
    assert str(tmp_path / "nothing" / "MNIST" / "raw") in errors[0]
    assert not list(tmp_path.rglob("*.ckpt"))
