"""scikit-learn's embedded handwritten digits: 1,797 real 8x8 images, 10 classes, offline."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import Tensor

from zoo.data.base import TensorDataModule, split_indices


class DigitsDataModule(TensorDataModule):
    """The default dataset: images (1, 8, 8) standardised with the training split's statistics."""

    name = "digits"
    flippable = False  # a mirrored digit is another symbol

    def __init__(
        self, val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0, **loader_args
    ) -> None:
        super().__init__(**loader_args)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        split_indices(1, val_fraction, test_fraction, seed)  # validate the fractions now

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.long)
        index = split_indices(len(labels), self.val_fraction, self.test_fraction, self.seed)
        train = images[index["train"]]
        mean, std = train.mean(), train.std()
        self.image_normalisation = {"mean": [float(mean)], "std": [float(std)]}
        return {split: ((images[i] - mean) / std, labels[i]) for split, i in index.items()}
