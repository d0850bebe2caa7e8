"""MNIST, Fashion-MNIST and CIFAR-10 read by torchvision's own dataset classes, held in memory.

Images are normalised once, at load, into float32 tensors (4 bytes a pixel), so every consumer of
the loaders (the Trainer, a GAN's FID set-up) sees floats.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from zoo.data.base import TensorDataModule
from zoo.data.files import (
    DataFileError,
    check_cifar_batch,
    check_labels,
    check_pair,
    cifar_batch,
    read_bytes,
)

# What torchvision raises on files that do not hold what they should (asserts, missing keys, a
# reshape that does not fit, a broken pickle); `check_contents` then names the file.
UNREADABLE = (
    AssertionError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
    pickle.UnpicklingError,
)


class TorchvisionDataModule(TensorDataModule):
    """A torchvision image-classification set: its train split divided into train/val (seeded),
    its test split as test; inputs (channels, height, width) normalised with the set's mean/std."""

    dataset_class: type[datasets.VisionDataset]
    num_classes = 10
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        val_size: int = 5000,
        seed: int = 0,
        **loader_args: Any,
    ) -> None:
        super().__init__(**loader_args)
        if not isinstance(val_size, int) or val_size < 1:
            raise ValueError(f"data.val_size must be an integer >= 1, got {val_size!r}")
        self.data_dir = Path(data_dir)
        self.download = download
        self.val_size = val_size
        self.seed = seed
        self.image_normalisation = {"mean": list(self.mean), "std": list(self.std)}

    def read(self, train: bool) -> tuple[Tensor, Tensor]:
        """One official split as (normalised float32 images N x C x H x W, int64 labels), its
        files checked against what they say (one DataFileError line naming a file that lies)."""
        self.check_files(train)
        try:
            dataset = self.dataset_class(str(self.data_dir), train=train, download=self.download)
            images = torch.as_tensor(np.asarray(dataset.data))
            labels = torch.as_tensor(dataset.targets, dtype=torch.long)
        except (RuntimeError, OSError) as error:  # urllib's URLError is an OSError
            if self.download:
                reason = " ".join(str(error).split())  # torchvision's message, on one line
                message = f"could not download {self.name} into {self.data_dir}: {reason}"
                raise RuntimeError(message) from None
            if not isinstance(error, RuntimeError):
                raise
            self.check_checksums()
            raise FileNotFoundError(self.missing_message()) from None
        except UNREADABLE as error:
            self.check_contents(train)
            raise DataFileError(
                f"{self.name} files in {self.expected_folder()} cannot be read: {error!r}"
            ) from None
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        in_range = len(labels) and 0 <= labels.min() <= labels.max() < self.num_classes
        if len(images) != len(labels) or not in_range:
            self.check_contents(train)
            check_labels(labels, self.num_classes, self.expected_folder())
            raise DataFileError(
                f"{self.name} files in {self.expected_folder()} hold {len(images)} images but "
                f"{len(labels)} labels"
            )
        return self.normalise(images), labels

    def check_files(self, train: bool) -> None:
        """Before reading: the split's files that are present can be read and say what they
        hold (quick checks); missing ones are left to torchvision (it says so, or downloads)."""
        raise NotImplementedError

    def check_checksums(self) -> None:
        """When torchvision refused the files as missing or corrupt: one DataFileError line
        naming a present file whose checksum is not the release's (else they are missing)."""

    def check_contents(self, train: bool) -> None:
        """Every file of the split read and checked in full: one DataFileError line naming the
        first that does not hold what it should (counts, shapes, labels 0..num_classes-1)."""
        raise NotImplementedError

    def normalise(self, images: Tensor) -> Tensor:
        """uint8 images -> float32 (x / 255 - mean) / std, channel first and contiguous."""
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return torch.addcmul(-mean / std, images.float(), 1 / (255 * std)).contiguous()

    def missing_message(self) -> str:
        """One line: where the files were expected and how to get them."""
        return (
            f"{self.name} files not found (or corrupt) in {self.expected_folder().resolve()}; "
            f"download them with data.download=true (or put them there, or set data.data_dir)"
        )

    def expected_folder(self) -> Path:
        """The folder torchvision reads the raw files from."""
        raise NotImplementedError

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        images, labels = self.read(train=True)
        if self.val_size >= len(labels):
            raise ValueError(
                f"data.val_size must be below the {len(labels)} training images, "
                f"got {self.val_size}"
            )
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed))
        val, train = order[: self.val_size], order[self.val_size :]
        return {
            "train": (images[train], labels[train]),
            "val": (images[val], labels[val]),
            "test": self.read(train=False),
        }


class MNISTDataModule(TorchvisionDataModule):
    """MNIST handwritten digits: 60,000 + 10,000 grey 28x28 images, 10 classes."""

    name = "mnist"
    flippable = False  # a mirrored digit is another symbol
    dataset_class = datasets.MNIST
    mean, std = (0.1307,), (0.3081,)

    def expected_folder(self) -> Path:
        return self.data_dir / self.dataset_class.__name__ / "raw"

    def files(self, train: bool) -> tuple[Path, Path]:
        """The split's IDX images and labels files."""
        prefix = "train" if train else "t10k"
        folder = self.expected_folder()
        return folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte"

    def check_files(self, train: bool) -> None:
        images, labels = self.files(train)
        if images.exists() and labels.exists():
            check_pair(images, labels)

    def check_contents(self, train: bool) -> None:
        images, labels = self.files(train)
        check_pair(images, labels)
        check_labels(np.frombuffer(read_bytes(labels)[8:], np.uint8), self.num_classes, labels)

    def missing_message(self) -> str:
        files = ", ".join(Path(name).stem for name, _ in self.dataset_class.resources)
        return f"{super().missing_message()}; expected files: {files}"


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST: 60,000 + 10,000 grey 28x28 clothing images, 10 classes."""

    name = "fashion_mnist"
    flippable = True
    dataset_class = datasets.FashionMNIST
    mean, std = (0.2860,), (0.3530,)


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10: 50,000 + 10,000 colour 32x32 images, 10 classes."""

    name = "cifar10"
    dataset_class = datasets.CIFAR10
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

    def expected_folder(self) -> Path:
        return self.data_dir / self.dataset_class.base_folder

    def files(self, train: bool) -> list[tuple[Path, str | None]]:
        """The split's batch files and the meta file, each with its release md5 (or None)."""
        cifar = self.dataset_class
        meta = (cifar.meta["filename"], cifar.meta["md5"])
        listing = [*(cifar.train_list if train else cifar.test_list), meta]
        return [(self.expected_folder() / name, md5) for name, md5 in listing]

    def check_files(self, train: bool) -> None:
        for path, _ in self.files(train):
            if path.exists():
                read_bytes(path, 1)

    def check_checksums(self) -> None:
        for path, md5 in dict(self.files(train=True) + self.files(train=False)).items():
            if md5 and path.exists() and not check_integrity(str(path), md5):
                raise DataFileError(
                    f"{path} is not CIFAR-10's {path.name}: its md5 differs from the release's "
                    "(corrupt, or another file); delete it and download again (data.download=true)"
                )

    def check_contents(self, train: bool) -> None:
        *batches, (meta, _) = self.files(train)
        for path, _ in batches:
            check_cifar_batch(path, self.num_classes)
        if not isinstance(cifar_batch(meta).get(self.dataset_class.meta["key"]), list):
            key = self.dataset_class.meta["key"]
            raise DataFileError(f"{meta} is not CIFAR-10's meta file: it lacks a {key!r} list")

    def missing_message(self) -> str:
        files = [name for name, _ in self.dataset_class.train_list + self.dataset_class.test_list]
        files.append(self.dataset_class.meta["filename"])
        return f"{super().missing_message()}; expected files: {', '.join(files)}"
