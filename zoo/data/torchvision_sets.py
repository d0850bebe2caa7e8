"""MNIST, Fashion-MNIST and CIFAR-10 read by torchvision's own dataset classes, held in memory.

Images are normalised once, at load, into float32 tensors (4 bytes a pixel), so every consumer of
the loaders (the Trainer, a GAN's FID set-up) sees floats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision import datasets

from zoo.data.base import TensorDataModule


class TorchvisionDataModule(TensorDataModule):
    """A torchvision image-classification set: its train split divided into train/val (seeded),
    its test split as test; inputs (channels, height, width) normalised with the set's mean/std."""

    dataset_class: type[datasets.VisionDataset]
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
        """One official split as (normalised float32 images N x C x H x W, int64 labels)."""
        try:
            dataset = self.dataset_class(str(self.data_dir), train=train, download=self.download)
        except (RuntimeError, OSError) as error:  # urllib's URLError is an OSError
            if self.download:
                reason = " ".join(str(error).split())  # torchvision's message, on one line
                message = f"could not download {self.name} into {self.data_dir}: {reason}"
                raise RuntimeError(message) from None
            if not isinstance(error, RuntimeError):
                raise
            raise FileNotFoundError(self.missing_message()) from None
        images = torch.as_tensor(np.asarray(dataset.data))
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        return self.normalise(images), torch.as_tensor(dataset.targets, dtype=torch.long)

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
    dataset_class = datasets.MNIST
    mean, std = (0.1307,), (0.3081,)

    def expected_folder(self) -> Path:
        return self.data_dir / self.dataset_class.__name__ / "raw"

    def missing_message(self) -> str:
        files = ", ".join(Path(name).stem for name, _ in self.dataset_class.resources)
        return f"{super().missing_message()}; expected files: {files}"


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST: 60,000 + 10,000 grey 28x28 clothing images, 10 classes."""

    name = "fashion_mnist"
    dataset_class = datasets.FashionMNIST
    mean, std = (0.2860,), (0.3530,)


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10: 50,000 + 10,000 colour 32x32 images, 10 classes."""

    name = "cifar10"
    dataset_class = datasets.CIFAR10
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

    def expected_folder(self) -> Path:
        return self.data_dir / self.dataset_class.base_folder

    def missing_message(self) -> str:
        files = [name for name, _ in self.dataset_class.train_list + self.dataset_class.test_list]
        files.append(self.dataset_class.meta["filename"])
        return f"{super().missing_message()}; expected files: {', '.join(files)}"
