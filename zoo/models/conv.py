"""Convolutional network for images of any size and channel count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.models.base import SupervisedModule
from zoo.models.feedforward import check_dropout, check_sizes


class ConvNet(SupervisedModule):
    """Blocks of conv 3x3 -> batch norm -> ReLU -> 2x2 max pool, then a small classifier.

    Pooling stops once the feature map is 1 pixel wide, so 8x8, 28x28 and 32x32 inputs all fit.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        hidden_size: int = 128,
        dropout: float = 0.25,
        **base_args: Any,
    ) -> None:
        super().__init__(input_shape, num_classes, **base_args)
        if len(self.input_shape) != 3:
            raise ValueError(
                f"ConvNet needs image input (channels, height, width), got shape {self.input_shape}; "
                "for sequences or flat features use model=mlp, rnn, lstm or gru"
            )
        check_sizes("channels", channels)
        check_sizes("hidden_size", [hidden_size])
        check_dropout(dropout)
        self.save_hyperparameters()
        in_channels, height, width = self.input_shape
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
        self.net = nn.Sequential(
            *blocks,
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_channels * height * width, hidden_size),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_classes),
        )
