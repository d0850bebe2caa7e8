"""Transformer pieces shared by the ViT (bidirectional) and the GPT (causal).

`SelfAttention` is multi-head self-attention on one fused qkv projection and torch's
`scaled_dot_product_attention` (flash / memory-efficient kernels where the device has them);
`Block` is the pre-norm residual block around it and a GELU MLP. `bias=False` leaves the biases
out of every linear layer and LayerNorm (nanoGPT's choice for the GPT: fewer tensors to update,
no bias gradients to reduce).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttention(nn.Module):
    """Multi-head self-attention: one qkv projection, fused scaled dot-product attention.

    `causal=True` lets position t attend to positions <= t only (a language model's mask).
    Attention-weight dropout applies only while training.
    """

    def __init__(
        self, width: int, heads: int, dropout: float, causal: bool = False, bias: bool = True
    ) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.causal = causal
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.proj = nn.Linear(width, width, bias=bias)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, width = x.shape
        # (batch, tokens, 3 * width) -> 3 x (batch, heads, tokens, head_dim)
        qkv = self.qkv(x).view(batch, tokens, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=self.causal
        )
        out = out.transpose(1, 2).reshape(batch, tokens, width)
        return self.proj_drop(self.proj(out))


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(
        self,
        width: int,
        heads: int,
        mlp_width: int,
        dropout: float,
        causal: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, bias=bias)
        self.attention = SelfAttention(width, heads, dropout, causal=causal, bias=bias)
        self.norm2 = nn.LayerNorm(width, bias=bias)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_width, bias=bias),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_width, width, bias=bias),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))
