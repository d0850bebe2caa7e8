"""Feed-forward network (multilayer perceptron) on flattened inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from zoo.models.base import SupervisedModule


class Step(nn.Module):
    """Heaviside step forward; straight-through gradient (that of hardtanh) backward."""

    def forward(self, x: Tensor) -> Tensor:
        surrogate = nn.functional.hardtanh(x)
        return surrogate + ((x > 0).to(x.dtype) - surrogate).detach()


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "step": Step,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "linear": nn.Identity,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """The activation module called `name` (one of ACTIVATIONS)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def check_dropout(dropout: float) -> None:
    """Dropout must be a probability in [0, 1)."""
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ValueError(f"model.dropout must be in [0, 1), got {dropout!r}")


def check_sizes(name: str, sizes: Sequence[int]) -> None:
    """A non-empty list of positive integers."""
    if not sizes or any(not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"model.{name} must be a non-empty list of positive integers, got {sizes!r}")


class FeedForward(SupervisedModule):
    """Linear layers with a chosen activation and dropout between them."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden_sizes: Sequence[int] = (256, 128),
        activation: str = "relu",
        dropout: float = 0.1,
        **base_args: Any,
    ) -> None:
        super().__init__(input_shape, num_classes, **base_args)
        check_sizes("hidden_sizes", hidden_sizes)
        check_dropout(dropout)
        make_activation(activation)
        self.save_hyperparameters()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.input_shape)
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), make_activation(activation), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
