"""Convolutional network for images of any size and channel count."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from zoo.nets.checks import check_dropout, check_image, check_positive, check_sizes


class ConvNet(nn.Sequential):
    """Blocks of conv 3x3 -> batch norm -> ReLU -> 2x2 max pool, then a small classifier.

    Pooling stops once the feature map is 1 pixel wide, so 8x8, 28x28 and 32x32 inputs all fit.
    The last layer is the output layer; `nn.Sequential(*list(net)[:-1])` gives the `hidden_size`
    features before it.
    """

    accepts = ("image",)

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int] = (32, 64),
        hidden_size: int = 128,
        dropout: float = 0.25,
    ) -> None:
        in_channels, height, width = check_image(type(self), input_shape)
        check_sizes("channels", channels)
        check_positive("hidden_size", hidden_size)
        check_dropout(dropout)
        check_positive("num_outputs", num_outputs)
        blocks: list[nn.Module] = []
        for out_channels in channels:
            blocks += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            if min(height, width) >= 2:
                blocks.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        super().__init__(
            *blocks,
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_channels * height * width, hidden_size),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_outputs),
        )
