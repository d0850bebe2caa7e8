"""Encoders E(x) -> code and decoders D(code) -> x for autoencoders, and the pair in one module.

An encoder maps images (B, C, H, W) to codes (B, latent_dim); with `variational=True` it gives
the mean and log-variance of a Gaussian over codes instead, a tuple of two (B, latent_dim)
tensors. Decoders are the GAN generators (zoo/nets/gan.py): a code in, an image of
`output_shape` out, unbounded (the data's normalised values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from zoo.nets.checks import check_image, check_positive, check_sizes
from zoo.nets.gan import ConvGenerator, MLPGenerator


class MLPDecoder(MLPGenerator):
    """A code -> linear layers with leaky ReLU -> an image of `output_shape` (the MLP GAN's
    generator)."""


class ConvDecoder(ConvGenerator):
    """A code -> a small feature map -> x2 transposed convolutions with batch norm -> an image of
    `output_shape` (the DCGAN generator)."""


class Encoder(nn.Module):
    """Features of an image -> a code, or (mean, log-variance) of one when `variational`."""

    def __init__(self, features: nn.Module, width: int, latent_dim: int, variational: bool) -> None:
        super().__init__()
        check_positive("latent_dim", latent_dim)
        self.features = features
        self.variational = variational
        self.head = nn.Linear(width, latent_dim * (2 if variational else 1))

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        code = self.head(self.features(x))
        return tuple(code.chunk(2, dim=1)) if self.variational else code


class MLPEncoder(Encoder):
    """Flattened image -> linear layers with leaky ReLU -> a code."""

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        widths: Sequence[int],
        variational: bool = False,
    ) -> None:
        check_sizes("widths", widths)
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width in pairwise([math.prod(input_shape), *widths]):
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(0.2)]
        super().__init__(nn.Sequential(*layers), widths[-1], latent_dim, variational)


class ConvEncoder(Encoder):
    """Strided 4x4 convolutions with batch norm (while the image is at least 4x4), then a code."""

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        widths: Sequence[int],
        variational: bool = False,
    ) -> None:
        check_sizes("widths", widths)
        channels, height, width = check_image(type(self), input_shape)
        layers: list[nn.Module] = []
        for width_in, width_out in pairwise([channels, *widths]):
            stride = 2 if min(height, width) >= 4 else 1
            kernel = 4 if stride == 2 else 3
            layers += [
                nn.Conv2d(width_in, width_out, kernel, stride, 1, bias=False),
                nn.BatchNorm2d(width_out),
                nn.LeakyReLU(0.2),
            ]
            if stride == 2:
                height, width = height // 2, width // 2
        layers.append(nn.Flatten())
        super().__init__(
            nn.Sequential(*layers), widths[-1] * height * width, latent_dim, variational
        )


class AutoEncoder(nn.Module):
    """An encoder and a decoder: `encode`, `decode`, and forward(x) -> reconstruction.

    Variational (`encoder.variational`): `encode` gives (mean, log-variance); forward samples a
    code with the reparameterisation trick in training and decodes the mean in eval mode.
    """

    def __init__(self, encoder: Encoder, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @property
    def variational(self) -> bool:
        return self.encoder.variational

    def encode(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return self.encoder(x)

    def decode(self, code: Tensor) -> Tensor:
        return self.decoder(code)

    def forward(self, x: Tensor) -> Tensor:
        code = self.encode(x)
        if self.variational:
            mean, log_var = code
            code = reparameterise(mean, log_var) if self.training else mean
        return self.decode(code)


def reparameterise(mean: Tensor, log_var: Tensor) -> Tensor:
    """A draw from N(mean, exp(log_var)) that gradients flow through: mean + sigma * noise."""
    return mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)


def gaussian_kl(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mean, exp(log_var)) || N(0, 1)) per sample, summed over the code's dimensions."""
    return 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum(dim=1)
