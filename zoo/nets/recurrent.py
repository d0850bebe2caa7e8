"""Recurrent networks (vanilla RNN, LSTM, GRU) over sequences, images read row by row, or tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from zoo.nets.checks import check_choice, check_dropout, check_positive, check_tokens

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def sequence_shape(input_shape: Sequence[int]) -> tuple[int, int]:
    """(time steps, features): a (T, F) sequence as is; a (C, H, W) image as H rows of C*W."""
    if len(input_shape) == 2:
        return input_shape[0], input_shape[1]
    if len(input_shape) == 3:
        channels, height, width = input_shape
        return height, channels * width
    raise ValueError(
        f"RecurrentNet needs a sequence (time steps, features), an image (channels, height, "
        f"width) or token ids (time steps,) with a vocab_size, got shape {tuple(input_shape)}"
    )


class RecurrentNet(nn.Module):
    """A stacked RNN, LSTM or GRU (`cell`); a linear head reads the last step's hidden state.

    Built on torch's fused recurrent layers (cuDNN on CUDA): no Python loop over time steps.
    The recurrent layers run in float32 also under mixed precision (autocast off around them).
    Bidirectional nets read the forward direction's last step and the backward direction's first.

    Token ids (input_shape (T,), given a `vocab_size`) go through an `embedding_size` embedding
    first; the embedding exists only then, so image and sequence nets have no such parameters.
    `per_position=True` puts the head on every step's top-layer output, (batch, T, num_outputs):
    a language model's next-token logits, each from the steps up to its own (so unidirectional).
    """

    accepts = ("image", "sequence", "tokens")

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        vocab_size: int | None = None,
        per_position: bool = False,
        embedding_size: int = 64,
    ) -> None:
        super().__init__()
        check_choice("cell", cell, CELLS)
        check_positive("hidden_size", hidden_size)
        check_positive("num_layers", num_layers)
        check_dropout(dropout)
        check_positive("num_outputs", num_outputs)
        check_positive("embedding_size", embedding_size)
        if per_position and bidirectional:
            raise ValueError(
                "model.bidirectional=true cannot give one output per position: the backward "
                "direction would see the tokens it is asked to predict; use bidirectional=false"
            )
        if vocab_size is None:
            self.embedding = None
            _, features = sequence_shape(input_shape)
        else:
            check_positive("vocab_size", vocab_size)
            check_tokens(type(self), input_shape)
            self.embedding = nn.Embedding(vocab_size, embedding_size)
            features = embedding_size
        self.per_position = per_position
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
        if self.embedding is not None:  # (batch, T) token ids -> (batch, T, embedding_size)
            x = self.embedding(x)
        elif x.ndim == 4:  # (batch, C, H, W) -> (batch, H, C*W): one row per step
            x = x.permute(0, 2, 1, 3).flatten(2)
        # float32 also under mixed precision: CUDA autocast runs cuDNN's RNNs in float16 even in
        # a bf16 run, with no gradient scaler there; explicit, and the same on every device.
        with torch.autocast(x.device.type, enabled=False):
            outputs, hidden = self.rnn(x.float())
        if self.per_position:  # (batch, T, hidden): the top layer at every step
            return self.head(outputs)
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]
        last_layer = hidden[-self.directions :]  # (directions, batch, hidden)
        return self.head(last_layer.transpose(0, 1).flatten(1))
