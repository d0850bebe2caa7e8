"""The adding problem (Hochreiter & Schmidhuber 1997): a generated long-range regression task."""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.data.base import TensorDataModule, split_indices


def adding_problem(
    num_samples: int, seq_len: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Inputs (n, seq_len, 2): a uniform [0, 1] value and a 0/1 marker; target: the marked sum.

    One marker falls in the first half of the sequence and one in the second, so the answer
    always depends on a step at least seq_len / 2 back. Predicting the mean (1.0) scores MSE 1/6.
    """
    values = torch.rand(num_samples, seq_len, generator=generator)
    half = seq_len // 2
    first = torch.randint(0, half, (num_samples,), generator=generator)
    second = torch.randint(half, seq_len, (num_samples,), generator=generator)
    markers = torch.zeros(num_samples, seq_len)
    rows = torch.arange(num_samples)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = (values * markers).sum(dim=1)
    return torch.stack([values, markers], dim=-1), targets


class AddingDataModule(TensorDataModule):
    """`num_samples` sequences of `seq_len` steps, split train/val/test; the same for a seed."""

    name = "adding"
    kind = "regression"

    def __init__(
        self,
        seq_len: int = 50,
        num_samples: int = 6000,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        **loader_args,
    ) -> None:
        super().__init__(**loader_args)
        if not isinstance(seq_len, int) or seq_len < 2:
            raise ValueError(f"data.seq_len must be an integer >= 2, got {seq_len!r}")
        if not isinstance(num_samples, int) or num_samples < 3:
            raise ValueError(f"data.num_samples must be an integer >= 3, got {num_samples!r}")
        split_indices(1, val_fraction, test_fraction, seed)  # validate the fractions now
        self.seq_len = seq_len
        self.num_samples = num_samples
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        inputs, targets = adding_problem(self.num_samples, self.seq_len, generator)
        index = split_indices(self.num_samples, self.val_fraction, self.test_fraction, self.seed)
        return {split: (inputs[i], targets[i]) for split, i in index.items()}
