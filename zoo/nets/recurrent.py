"""Recurrent networks (vanilla RNN, LSTM, GRU) over sequences or images read row by row."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from zoo.nets.checks import check_choice, check_dropout, check_positive

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def sequence_shape(input_shape: Sequence[int]) -> tuple[int, int]:
    """(time steps, features): a (T, F) sequence as is; a (C, H, W) image as H rows of C*W."""
    if len(input_shape) == 2:
        return input_shape[0], input_shape[1]
    if len(input_shape) == 3:
        channels, height, width = input_shape
        return height, channels * width
    raise ValueError(
        f"RecurrentNet needs a sequence (time steps, features) or an image (channels, height, "
        f"width), got shape {tuple(input_shape)}"
    )


class RecurrentNet(nn.Module):
    """A stacked RNN, LSTM or GRU (`cell`); a linear head reads the last step's hidden state.

    Built on torch's fused recurrent layers (cuDNN on CUDA): no Python loop over time steps.
    Bidirectional nets read the forward direction's last step and the backward direction's first.
    """

    accepts = ("image", "sequence")

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_choice("cell", cell, CELLS)
        check_positive("hidden_size", hidden_size)
        check_positive("num_layers", num_layers)
        check_dropout(dropout)
        check_positive("num_outputs", num_outputs)
        _, features = sequence_shape(input_shape)
        self.directions = 2 if bidirectional else 1
        self.rnn = CELLS[cell](
            features,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,  # torch applies it between layers only
            bidirectional=bidirectional,
            batch_first=True,
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.directions * hidden_size, num_outputs)
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4:  # (batch, C, H, W) -> (batch, H, C*W): one row per step
            x = x.permute(0, 2, 1, 3).flatten(2)
        _, hidden = self.rnn(x)
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]
        last_layer = hidden[-self.directions :]  # (directions, batch, hidden)
        return self.head(last_layer.transpose(0, 1).flatten(1))
