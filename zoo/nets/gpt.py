"""GPT: a decoder-only causal transformer over token ids (Radford et al. 2018), after nanoGPT.

Token embeddings plus learned position embeddings go through pre-norm transformer blocks whose
self-attention is causal (position t sees positions <= t only; zoo/nets/transformer.py), a final
LayerNorm and a linear head. When the head predicts tokens (num_outputs == vocab_size) its weight
is the token embedding's (weight tying, Press & Wolf 2017). As in nanoGPT, the linear layers and
LayerNorms have no biases by default (`bias=False`); a head of its own keeps its bias.

The defaults (4 blocks of width 128, about 0.8M parameters for 100 characters and windows of 128)
are nanoGPT's CPU configuration for character-level Shakespeare: trainable in minutes on a CPU.
Dropout defaults to 0: a run of minutes sees each character of a large corpus about once, where
dropout only slows learning (2M characters of Python sources, 500 Adam steps of 32 x 128: held-out
loss 1.80 without dropout, 1.92 with 0.1); raise it for long runs on small texts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from zoo.nets.checks import (
    check_dropout,
    check_heads,
    check_mlp_ratio,
    check_positive,
    check_tokens,
)
from zoo.nets.transformer import Block


class GPT(nn.Module):
    """Token + position embeddings -> `depth` causal pre-norm blocks -> LayerNorm -> head.

    `per_position=True` (language modelling) gives (batch, T, num_outputs), position t's output
    depending on tokens 0..t only; False gives the last position's output, (batch, num_outputs).
    `block_size` is the longest input the position embeddings cover; None takes the data's window
    (input_shape[0]); inputs may be shorter than it, never longer.
    """

    accepts = ("tokens",)

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        vocab_size: int,
        per_position: bool = True,
        block_size: int | None = None,
        depth: int = 4,
        width: int = 128,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        window = check_tokens(type(self), input_shape)
        check_positive("num_outputs", num_outputs)
        check_positive("vocab_size", vocab_size)
        check_positive("depth", depth)
        check_positive("width", width)
        check_positive("heads", heads)
        check_dropout(dropout)
        check_heads(width, heads)
        mlp_width = check_mlp_ratio(mlp_ratio, width)
        if block_size is None:
            block_size = window
        else:
            check_positive("block_size", block_size)
            if block_size < window:
                raise ValueError(
                    f"model.block_size {block_size} is shorter than the data's windows of "
                    f"{window} tokens; set it to at least {window}, or null for the data's window"
                )
        self.block_size = block_size
        self.per_position = per_position

        self.token_embed = nn.Embedding(vocab_size, width)
        self.pos_embed = nn.Parameter(torch.zeros(block_size, width))
        self.embed_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(
            *(
                Block(width, heads, mlp_width, dropout, causal=True, bias=bias)
                for _ in range(depth)
            )
        )
        self.norm = nn.LayerNorm(width, bias=bias)
        self.tied = num_outputs == vocab_size
        self.head = nn.Linear(width, num_outputs, bias=not self.tied)
        self.reset_parameters()
        if self.tied:
            self.head.weight = self.token_embed.weight

    def reset_parameters(self) -> None:
        """GPT-2's initialisation, as nanoGPT: weights and embeddings ~ N(0, 0.02), biases 0.

        The projections back onto the residual stream (attention output, MLP's second layer) get
        0.02 / sqrt(2 * depth), so the stream's variance does not grow with depth; LayerNorms keep
        PyTorch's (1, 0).
        """
        residual_std = 0.02 / math.sqrt(2 * len(self.blocks))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            nn.init.normal_(block.attention.proj.weight, std=residual_std)
            nn.init.normal_(block.mlp[-2].weight, std=residual_std)
        nn.init.normal_(self.pos_embed, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        steps = x.shape[1]
        if steps > self.block_size:
            raise ValueError(
                f"GPT got {steps} tokens per sequence, more than model.block_size "
                f"{self.block_size}; feed at most the last {self.block_size}"
            )
        x = self.embed_drop(self.token_embed(x) + self.pos_embed[:steps])
        x = self.norm(self.blocks(x))
        if not self.per_position:
            x = x[:, -1]
        return self.head(x)
