"""LightningDataModules; every one exposes `input_shape`, `num_classes` and `task`."""

from zoo.data.adding import AddingDataModule
from zoo.data.base import InMemoryLoader, TensorDataModule
from zoo.data.digits import DigitsDataModule
from zoo.data.torchvision_sets import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "AddingDataModule",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "InMemoryLoader",
    "MNISTDataModule",
    "TensorDataModule",
]
