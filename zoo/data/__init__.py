"""LightningDataModules; each one says what a network needs in one `DataSpec` (`.spec`)."""

from zoo.data.adding import AddingDataModule
from zoo.data.base import InMemoryLoader, TensorDataModule
from zoo.data.digits import DigitsDataModule
from zoo.data.folder import FolderDataModule
from zoo.data.listops import ListOpsDataModule
from zoo.data.spec import DataSpec
from zoo.data.tables import CSVDataModule, SklearnTable, TableDataModule
from zoo.data.text import TextDataModule
from zoo.data.torchvision_sets import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "AddingDataModule",
    "CIFAR10DataModule",
    "CSVDataModule",
    "DataSpec",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "FolderDataModule",
    "InMemoryLoader",
    "ListOpsDataModule",
    "MNISTDataModule",
    "SklearnTable",
    "TableDataModule",
    "TensorDataModule",
    "TextDataModule",
]
