"""Supervised learning: one network maps inputs to class logits or regression values."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from zoo.nets.checks import check_positive
from zoo.tasks.base import Task, each_stage, register
from zoo.tasks.pictures import WorstClassified, confusion_figure

KINDS = ("classification", "regression")
# The metrics by name (val/<name>, test/<name>): accuracy for classification, the rest for
# regression; which way is better is the torchmetrics class's own `higher_is_better`.
METRICS = {
    "acc": MulticlassAccuracy,
    "mse": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "r2": R2Score,
}


@register
class Supervised(Task):
    """Cross-entropy and `*/acc` for classification; MSE and `*/mse`, `*/mae`, `*/r2` for
    regression.

    `target_scale` (mean, std of the training targets, given by table data): the network
    learns the standardised target, `forward` answers in the data's own units, and the loss is
    the MSE in units of the target's variance (1.0: as good as predicting the mean).

    `net` is a plain module, or its config (`{"_target_": "zoo.nets.ConvNet", ...}`), built here
    for `input_shape` and `num_outputs` (and `vocab_size`, for token or tree inputs); a config is
    what checkpoints keep, so `zoo.load` and `load_from_checkpoint` rebuild the net on their own.
    """

    higher_is_better = each_stage(
        loss=False, **{name: bool(metric.higher_is_better) for name, metric in METRICS.items()}
    )
    val_metric = ("val/acc", "val/mse")  # classification, regression
    test_metric = ("test/acc", "test/mse")
    predicts = True

    def __init__(
        self,
        net: dict[str, Any] | nn.Module,
        input_shape: tuple[int, ...],
        num_outputs: int,
        kind: str = "classification",
        vocab_size: int | None = None,
        target_scale: tuple[float, float] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(input_shape, optimizer, scheduler, compile)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        check_positive("num_outputs", num_outputs)
        self.save_hyperparameters(ignore=["net"] if isinstance(net, nn.Module) else None)
        # One output per sample, also from networks that can answer at every step.
        self.net = self.network(
            net,
            input_shape=self.input_shape,
            num_outputs=num_outputs,
            vocab_size=vocab_size,
            per_position=False,
        )
        self.kind = kind
        self.target_mean, self.target_std = target_scale or (0.0, 1.0)
        if kind == "classification":
            # validate_args=False: its checks read values on the host at every validation step.
            accuracy = METRICS["acc"](num_outputs, average="micro", validate_args=False)
            metric = MetricCollection({"acc": accuracy})
        else:
            metric = MetricCollection({name: METRICS[name]() for name in ("mse", "mae", "r2")})
        # Test-time pictures for a classifier: its confusion matrix and, on images, the worst.
        self.confusion = (
            MulticlassConfusionMatrix(num_outputs, validate_args=False)
            if kind == "classification"
            else None
        )
        self.worst = (
            WorstClassified() if kind == "classification" and len(input_shape) == 3 else None
        )
        # No train metric: per-step metric updates cost time and train/loss already tells.
        self.metrics = nn.ModuleDict({s: metric.clone(prefix=f"{s}/") for s in ("val", "test")})
        if vocab_size is None:  # ids and trees have no neutral example; the summary does without
            self.example_input_array = torch.zeros(2, *self.input_shape)

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def example_input(self, batch: int = 2, generator: torch.Generator | None = None) -> Tensor:
        """Random inputs; token ids or trees (`vocab_size` set) as random ids."""
        vocab_size = self.hparams.get("vocab_size")
        if vocab_size:
            return torch.randint(vocab_size, (batch, *self.input_shape), generator=generator)
        return super().example_input(batch, generator)

    def forward(self, x: Tensor) -> Tensor:
        output = self.net(x)
        if self.kind == "regression":
            return output * self.target_std + self.target_mean
        return output

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy on logits, or mean squared error (over the target's variance when
        scaled) for regression."""
        if self.kind == "classification":
            return F.cross_entropy(output, target)
        return F.mse_loss(output, target.view_as(output)) / self.target_std**2

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, output, target) for one batch; a regression target shaped like the output."""
        x, y = batch
        output = self(self.prepare_input(x))
        if self.kind == "regression":
            y = y.view_as(output)
        return self.loss(output, y), output, y

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _, _ = self._step(batch)
        self.log_train_step({"loss": loss}, len(batch[0]), prog_bar=("loss",))
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        loss, output, y = self._step(batch)
        getattr(self, f"{stage}_means").add({"loss": loss}, len(y))
        prediction = output.argmax(-1) if self.kind == "classification" else output
        self.metrics[stage].update(prediction, y)
        return loss

    def _log_evaluation(self, stage: str) -> None:
        self.log_epoch(stage, self.metrics[stage].compute())
        self.metrics[stage].reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        if self.confusion is None:
            return self._evaluate(batch, "test")
        loss, output, y = self._step(batch)
        self.test_means.add({"loss": loss}, len(y))
        self.metrics["test"].update(output.argmax(-1), y)
        self.confusion.update(output.argmax(-1), y)
        if self.worst is not None:
            self.worst.update(batch[0], output, y)
        return loss

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")
        if self.confusion is not None:
            self.log_pictures()

    def log_pictures(self) -> None:
        """The confusion matrix and the worst-classified images, into TensorBoard's Images."""
        confusion = confusion_figure(self.confusion)  # computed on every process (DDP sync)
        if isinstance(self.logger, TensorBoardLogger) and self.trainer.is_global_zero:
            writer = self.logger.experiment
            if confusion is not None:
                writer.add_figure("test/confusion_matrix", confusion, self.global_step)
            if self.worst is not None and len(self.worst.images):
                writer.add_figure("test/worst_classified", self.worst.figure(), self.global_step)
        self.confusion.reset()
        if self.worst is not None:
            self.worst.reset()

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(self.prepare_input(x))
