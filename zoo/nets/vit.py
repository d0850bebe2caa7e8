"""Vision Transformer (Dosovitskiy et al. 2021) for images of any size and channel count.

The image is cut into square patches (a strided convolution), each patch becomes a token, learned
position embeddings are added, and pre-norm transformer blocks (multi-head self-attention through
`scaled_dot_product_attention`, then a GELU MLP) mix the tokens. A class token (pool="cls") or the
mean of the patch tokens (pool="mean") goes through a final LayerNorm to a linear head. The blocks
are shared with the GPT (zoo/nets/transformer.py), here without a causal mask.

The defaults are a small model meant to train on the 8x8 digits in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from zoo.nets.checks import (
    check_choice,
    check_dropout,
    check_heads,
    check_image,
    check_mlp_ratio,
    check_positive,
)
from zoo.nets.transformer import Block

POOLS = ("cls", "mean")


def common_divisors(height: int, width: int) -> list[int]:
    """Every patch size that tiles a height x width image exactly."""
    return [p for p in range(1, min(height, width) + 1) if height % p == 0 and width % p == 0]


def adapted_patch_size(height: int, width: int) -> int:
    """The largest of 4 and 2 that divides the image into at least 16 patches, else 1.

    2 for 8x8 (16 patches), 4 for 28x28 (49) and 32x32 (64).
    """
    for p in (4, 2):
        if height % p == 0 and width % p == 0 and (height // p) * (width // p) >= 16:
            return p
    return 1


class ViT(nn.Module):
    """Patch embedding + position embeddings -> `depth` pre-norm blocks -> LayerNorm -> head.

    `patch_size=None` adapts to the image (see `adapted_patch_size`); an explicit one must divide
    both sides. `pool` is "cls" (a learned class token) or "mean" (average of the patch tokens).
    """

    accepts = ("image",)

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        patch_size: int | None = None,
        depth: int = 4,
        width: int = 64,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        pool: str = "cls",
    ) -> None:
        super().__init__()
        channels, height, image_width = check_image(type(self), input_shape)
        check_positive("num_outputs", num_outputs)
        check_positive("depth", depth)
        check_positive("width", width)
        check_positive("heads", heads)
        check_dropout(dropout)
        check_choice("pool", pool, POOLS)
        check_heads(width, heads)
        mlp_width = check_mlp_ratio(mlp_ratio, width)
        if patch_size is None:
            patch_size = adapted_patch_size(height, image_width)
        else:
            check_positive("patch_size", patch_size)
            if height % patch_size or image_width % patch_size:
                raise ValueError(
                    f"model.patch_size {patch_size} does not divide the {height}x{image_width} "
                    f"image; choose one of {common_divisors(height, image_width)}"
                )
        self.patch_size = patch_size
        self.grid = (height // patch_size, image_width // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.pool = pool

        self.patch_embed = nn.Conv2d(channels, width, patch_size, stride=patch_size)
        extra = 1 if pool == "cls" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if extra else None
        self.pos_embed = nn.Parameter(torch.zeros(1, extra + self.num_patches, width))
        self.embed_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(
            *(Block(width, heads, mlp_width, dropout) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_outputs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Position embeddings ~ N(0, 1), class token 0; every layer keeps PyTorch's default init.

        Unit-scale positions are as large as the patch embeddings, so every token knows its place
        from the first step; the usual N(0, 0.02) leaves the few tokens of a small image nearly
        position-blind and the model much slower to fit.
        """
        nn.init.normal_(self.pos_embed, std=1.0)
        if self.cls_token is not None:
            nn.init.zeros_(self.cls_token)

    def tokens(self, x: Tensor) -> Tensor:
        """(batch, C, H, W) -> (batch, [1 +] patches, width) tokens with positions added."""
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (batch, patches, width), row-major
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.embed_drop(x + self.pos_embed)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(self.blocks(self.tokens(x)))
        pooled = x[:, 0] if self.pool == "cls" else x.mean(dim=1)
        return self.head(pooled)
