"""A classifier's test-time pictures for TensorBoard: the confusion matrix and the test images it
got most wrong (highest loss), each titled `label -> prediction`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

if TYPE_CHECKING:  # matplotlib is imported only when a picture is drawn
    from matplotlib.figure import Figure

SHOWN = 32  # worst-classified images in the grid
MOST_CLASSES = 30  # a larger confusion matrix is not readable as a picture


class WorstClassified:
    """The `SHOWN` test samples with the highest loss so far (kept on the host, a few images)."""

    def __init__(self, shown: int = SHOWN) -> None:
        self.shown = shown
        self.reset()

    def reset(self) -> None:
        self.losses = torch.empty(0)
        self.images = self.labels = self.predictions = torch.empty(0)

    def update(self, images: Tensor, logits: Tensor, labels: Tensor) -> None:
        losses = F.cross_entropy(logits.float(), labels, reduction="none").detach().cpu()
        keep = losses.topk(min(self.shown, len(losses))).indices
        self.losses = torch.cat([self.losses, losses[keep]])
        parts = (images.detach().float().cpu(), labels.cpu(), logits.argmax(-1).cpu())
        merged = [
            torch.cat([old, new[keep]]) if len(old) else new[keep]
            for old, new in zip((self.images, self.labels, self.predictions), parts)
        ]
        worst = self.losses.topk(min(self.shown, len(self.losses))).indices
        self.losses = self.losses[worst]
        self.images, self.labels, self.predictions = (part[worst] for part in merged)

    def figure(self) -> Figure:
        """The images in a grid, worst first, each titled `label -> prediction`."""
        from matplotlib.figure import Figure

        columns = 8
        rows = math.ceil(len(self.images) / columns)
        figure = Figure(figsize=(columns * 1.3, rows * 1.45 + 0.4))
        figure.suptitle("worst-classified test images (label -> prediction)", fontsize=10)
        for i, (image, label, prediction) in enumerate(
            zip(self.images, self.labels, self.predictions)
        ):
            axis = figure.add_subplot(rows, columns, i + 1)
            low, high = image.min(), image.max()
            pixels = ((image - low) / (high - low + 1e-8)).permute(1, 2, 0).squeeze(-1)
            axis.imshow(pixels.numpy(), cmap="gray" if pixels.dim() == 2 else None)
            wrong = bool(label != prediction)  # the worst of a good model may be right
            color = "firebrick" if wrong else "seagreen"
            axis.set_title(f"{label} -> {prediction}", fontsize=8, color=color)
            axis.axis("off")
        figure.tight_layout()
        return figure


def confusion_figure(confusion: MulticlassConfusionMatrix) -> Figure | None:
    """The confusion matrix (rows: labels, columns: predictions) as a figure; None when the
    classes are too many to read."""
    if confusion.num_classes > MOST_CLASSES:
        return None
    figure, axis = confusion.plot()
    axis.set_title("test confusion matrix")
    figure.set_size_inches(6, 5.5)
    return figure
