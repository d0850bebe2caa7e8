"""LightningDataModules; every one exposes `input_shape`, `num_classes` and `task`."""

from zoo.data.adding import AddingDataModule
from zoo.data.base import InMemoryLoader, TensorDataModule
from zoo.data.digits import DigitsDataModule

__all__ = ["AddingDataModule", "DigitsDataModule", "InMemoryLoader", "TensorDataModule"]
