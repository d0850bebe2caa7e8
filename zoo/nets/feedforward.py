"""Feed-forward network (multilayer perceptron) on flattened inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from zoo.nets.checks import check_choice, check_dropout, check_positive, check_sizes


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


class FeedForward(nn.Sequential):
    """Flatten, then linear layers with a chosen activation and dropout between them.

    With no hidden layer (`hidden_sizes=[]`) it is one linear layer, `self[1]`: a single neuron
    per output (linear regression, or logistic/softmax regression on classes).
    """

    accepts = ("image", "sequence", "vector")

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        hidden_sizes: Sequence[int] = (256, 128),
        activation: str = "relu",
        dropout: float = 0.1,
    ) -> None:
        check_sizes("hidden_sizes", hidden_sizes, allow_empty=True)
        check_choice("activation", activation, ACTIVATIONS)
        check_dropout(dropout)
        check_positive("num_outputs", num_outputs)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = size
        super().__init__(*layers, nn.Linear(width, num_outputs))
