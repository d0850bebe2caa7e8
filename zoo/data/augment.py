"""Data augmentation on whole batches on the training device: random crop with padding and
horizontal flip, a fresh choice for every image.

torchvision.transforms.v2 draws one random choice per call, so `v2.RandomCrop` on a batch
tensor crops every image of it alike; here v2's functional ops pad and flip the whole batch and
each image takes its own offset and coin by indexing, with no per-image Python.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as F


def crop_and_flip(images: Tensor, padding: int, flip: bool = True) -> Tensor:
    """Each image of a (N, C, H, W) batch padded by `padding` zeros (the mean, after
    standardisation), cropped back to H x W at a random offset and, if `flip`, mirrored left to
    right with probability 1/2."""
    n, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, [padding])
    top = torch.randint(0, 2 * padding + 1, (n, 1), device=device)
    left = torch.randint(0, 2 * padding + 1, (n, 1), device=device)
    rows = (top + torch.arange(height, device=device))[:, None, :, None]
    cols = (left + torch.arange(width, device=device))[:, None, None, :]
    samples = torch.arange(n, device=device)[:, None, None, None]
    planes = torch.arange(channels, device=device)[None, :, None, None]
    cropped = padded[samples, planes, rows, cols]
    if not flip:
        return cropped
    mirror = torch.rand(n, 1, 1, 1, device=device) < 0.5
    return torch.where(mirror, F.horizontal_flip(cropped), cropped)


def padding_for(height: int, width: int) -> int:
    """An eighth of the smaller side, at least 1 pixel (4 for 32 x 32, 1 for 8 x 8)."""
    return max(1, min(height, width) // 8)
