"""Generators G(z) -> image and discriminators D(image) -> one logit, for adversarial training.

Generators return unbounded image logits (B, C, H, W); the adversarial task squashes them with
tanh onto the data's value range. Discriminators return (B, 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

from torch import nn

from zoo.nets.checks import check_image, check_positive, check_sizes


class MLPGenerator(nn.Sequential):
    """z -> linear layers with leaky ReLU -> an image of `output_shape`."""

    def __init__(self, latent_dim: int, output_shape: Sequence[int], widths: Sequence[int]) -> None:
        check_positive("latent_dim", latent_dim)
        check_sizes("widths", widths)
        layers: list[nn.Module] = []
        for width_in, width in pairwise([latent_dim, *widths]):
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(0.2)]
        super().__init__(
            *layers,
            nn.Linear(widths[-1], math.prod(output_shape)),
            nn.Unflatten(1, tuple(output_shape)),
        )


class MLPDiscriminator(nn.Sequential):
    """Flattened image -> linear layers with leaky ReLU -> one logit."""

    def __init__(self, input_shape: Sequence[int], widths: Sequence[int]) -> None:
        check_sizes("widths", widths)
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width in pairwise([math.prod(input_shape), *widths]):
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(0.2)]
        super().__init__(*layers, nn.Linear(widths[-1], 1))


class ConvGenerator(nn.Sequential):
    """DCGAN generator: a linear map to a small feature map, then x2 transposed convolutions.

    It starts from (H, W) / 2^k, where k is how often both sides halve evenly (at most one
    halving per width), so 8x8, 28x28 and 32x32 all come out exact.
    """

    def __init__(self, latent_dim: int, output_shape: Sequence[int], widths: Sequence[int]) -> None:
        check_positive("latent_dim", latent_dim)
        check_sizes("widths", widths)
        channels, height, width = check_image(type(self), output_shape)
        ups = 0
        while ups < len(widths) and height % 2 == 0 and width % 2 == 0 and min(height, width) > 2:
            height, width, ups = height // 2, width // 2, ups + 1
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, widths[0] * height * width, bias=False),
            nn.Unflatten(1, (widths[0], height, width)),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for width_in, width_out in pairwise(widths[:ups]):
            layers += [
                nn.ConvTranspose2d(width_in, width_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width_out),
                nn.ReLU(inplace=True),
            ]
        last = widths[max(ups - 1, 0)]
        if ups:
            layers.append(nn.ConvTranspose2d(last, channels, 4, 2, 1))
        else:
            layers.append(nn.Conv2d(last, channels, 3, padding=1))
        super().__init__(*layers)


class ConvDiscriminator(nn.Sequential):
    """DCGAN discriminator: strided 4x4 convolutions (batch norm after the first), one logit."""

    def __init__(self, input_shape: Sequence[int], widths: Sequence[int]) -> None:
        check_sizes("widths", widths)
        channels, height, width = check_image(type(self), input_shape)
        layers: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(pairwise([channels, *widths])):
            stride = 2 if min(height, width) >= 4 else 1
            kernel = 4 if stride == 2 else 3
            layers += [nn.Conv2d(width_in, width_out, kernel, stride, 1, bias=False)]
            if i > 0:
                layers.append(nn.BatchNorm2d(width_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if stride == 2:
                height, width = height // 2, width // 2
        super().__init__(*layers, nn.Flatten(), nn.Linear(widths[-1] * height * width, 1))
