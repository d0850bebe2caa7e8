"""Per-step values into epoch means without host syncs, logged only when Lightning's logger
writes (`train/<name>_step`) and once per epoch (`<stage>/<name>`, `train/<name>_epoch`)."""

from __future__ import annotations

from typing import ClassVar

import lightning as L
from torch import Tensor, nn
from torchmetrics import MeanMetric

from zoo.lightning_private import logger_writes_this_step


class EpochMeans(nn.ModuleDict):
    """Batch-weighted means of named per-step values over one epoch (torchmetrics: DDP-synced)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__({name: MeanMetric(nan_strategy="disable") for name in names})

    def add(self, values: dict[str, Tensor], weight: int) -> None:
        """Add batch means, each counted `weight` times (the batch size)."""
        # One entry per sample instead of `weight=`: nan_strategy="disable" (no host sync) drops
        # the weight in torchmetrics <= 1.9 (Lightning-AI/torchmetrics#3434).
        for name, value in values.items():
            self[name].update(value.detach().expand(weight))

    def pop(self) -> dict[str, Tensor]:
        """The means of the values updated this epoch; then start afresh."""
        means = {name: metric.compute() for name, metric in self.items() if metric.update_called}
        for metric in self.values():
            metric.reset()
        return means


class EpochLogging(L.LightningModule):
    """A task's logging: `train_values` and `eval_values` name its per-step values; they go into
    `<stage>_means` (made by `make_means`) and are logged by `log_train_step` and `log_epoch`."""

    train_values: ClassVar[tuple[str, ...]] = ("loss",)  # logged as train/<name>_step, _epoch
    eval_values: ClassVar[tuple[str, ...]] = ("loss",)  # val/<name>, test/<name>

    def make_means(self) -> None:
        """One EpochMeans per stage, for this task's values."""
        self.train_means = EpochMeans(list(self.train_values))
        self.val_means, self.test_means = (EpochMeans(list(self.eval_values)) for _ in range(2))

    def log_train_step(
        self, values: dict[str, Tensor], batch_size: int, prog_bar: tuple[str, ...] = ()
    ) -> None:
        """Add this step's values to the epoch means; `self.log` only when the logger writes."""
        self.train_means.add(values, batch_size)
        if logger_writes_this_step(self.trainer):
            for name, value in values.items():
                self.log(
                    f"train/{name}_step",
                    value,
                    on_step=True,
                    on_epoch=False,
                    prog_bar=name in prog_bar,
                )

    def log_epoch(self, stage: str, extra: dict[str, Tensor] | None = None) -> None:
        """Log this epoch's means (and `extra`, e.g. computed torchmetrics) for `stage`."""
        suffix = "_epoch" if stage == "train" else ""
        means = getattr(self, f"{stage}_means").pop()
        values = {f"{stage}/{name}{suffix}": mean for name, mean in means.items()}
        values.update(extra or {})
        if values:  # sync_dist: the means are synced already; this only keeps Lightning quiet
            self.log_dict(values, prog_bar=stage != "train", sync_dist=True)
