"""Data augmentation on whole batches on the training device: random crop with padding and
horizontal flip, a fresh choice for every image.

torchvision.transforms.v2 draws one random choice per call, so `v2.RandomCrop` on a batch
tensor crops every image of it alike; here v2's functional `pad` pads the whole batch and each
image takes its own offset and coin in one gather, with no per-image Python.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as F


def crop_and_flip(images: Tensor, padding: int, flip: bool = True) -> Tensor:
    """Each image of a (N, C, H, W) batch padded by `padding` zeros (the mean, after
    standardisation), cropped back to H x W at a random offset and, if `flip`, mirrored left to
    right with probability 1/2: one gather from the padded batch."""
    n, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, [padding]).flatten(2)  # (N, C, (H + 2p) * (W + 2p))
    top = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=device)
    left = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=device)
    columns = torch.arange(width, device=device)
    if flip:
        columns = torch.where(torch.rand(n, 1, 1, device=device) < 0.5, columns.flip(0), columns)
    rows = top + torch.arange(height, device=device)[:, None]
    index = (rows * (width + 2 * padding) + left + columns).view(n, 1, height * width)
    cropped = padded.gather(2, index.expand(n, channels, height * width))
    return cropped.view(n, channels, height, width)


def padding_for(height: int, width: int) -> int:
    """An eighth of the smaller side, at least 1 pixel (4 for 32 x 32, 1 for 8 x 8)."""
    return max(1, min(height, width) // 8)
