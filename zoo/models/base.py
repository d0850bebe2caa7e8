"""The one training path shared by every supervised family."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from zoo.checkpoints import checkpoint_errors

TASKS = ("classification", "regression")
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3}
STAGES = ("train", "val", "test")


def check_optimizer(optimizer: dict[str, Any]) -> None:
    """Fail now, with one clear line, on an optimizer config torch would reject later."""
    lr = optimizer.get("lr")
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"optimizer.lr must be > 0, got {lr!r}")
    try:
        instantiate(optimizer, params=[nn.Parameter(torch.zeros(1))])
    except Exception as error:  # torch/hydra raise TypeError, ValueError, InstantiationException
        cause = error.__cause__ or error
        raise ValueError(f"invalid optimizer {optimizer.get('_target_')}: {cause}") from None


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


class StepLogging:
    """Logging that costs no `self.log` call on most steps.

    One `self.log` call costs about 0.5 ms on a CPU (bench/RESULTS.md), as much as a whole small
    training step. So every step only adds its values to torchmetrics means (`<stage>_means`,
    ~25 us each, no host sync); `self.log` runs on the steps where Lightning's logger writes (every
    `trainer.log_every_n_steps`: `train/<name>_step`) and once per epoch (`<stage>/<name>`,
    `train/<name>_epoch`).
    """

    def log_train_step(self: Any, values: dict[str, Tensor], batch_size: int, prog_bar: tuple = ()) -> None:
        self.train_means.add(values, batch_size)
        if self.trainer._logger_connector.should_update_logs:  # Lightning's own "write now" test
            for name, value in values.items():
                self.log(f"train/{name}_step", value, on_step=True, on_epoch=False, prog_bar=name in prog_bar)

    def log_epoch(self: Any, stage: str, extra: dict[str, Tensor] | None = None) -> None:
        """Log this epoch's means (and `extra`, e.g. computed torchmetrics) for `stage`."""
        suffix = "_epoch" if stage == "train" else ""
        values = {f"{stage}/{name}{suffix}": mean for name, mean in getattr(self, f"{stage}_means").pop().items()}
        values.update(extra or {})
        if values:  # sync_dist: the means are synced already; this only keeps Lightning from warning
            self.log_dict(values, prog_bar=stage != "train", sync_dist=True)


class SupervisedModule(StepLogging, L.LightningModule):
    """Loss, metrics, logging and optimizers for a network mapping inputs to outputs.

    Subclasses build `self.net` in `__init__` and may override `forward`. The task decides loss
    and metric: cross-entropy + accuracy for classification, MSE for regression. Optimizer and
    scheduler are plain config dicts (Hydra `_target_` form), instantiated in
    `configure_optimizers`, so checkpoints hold only plain data.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        task: str = "classification",
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.task = task
        self.optimizer_config = dict(optimizer or DEFAULT_OPTIMIZER)
        self.scheduler_config = dict(scheduler) if scheduler else None
        self.compile_model = compile  # nn.Module.compile is a method: keep that name free
        self.channels_last = False  # set in `setup` for convolutional nets on CUDA
        check_optimizer(self.optimizer_config)
        if task == "classification":
            metric = MetricCollection({"acc": MulticlassAccuracy(num_classes, average="micro")})
        else:
            metric = MetricCollection({"mse": MeanSquaredError()})
        # No train metric: per-step metric updates cost time and train/loss already tells.
        self.metrics = nn.ModuleDict({s: metric.clone(prefix=f"{s}/") for s in STAGES[1:]})
        self.train_means, self.val_means, self.test_means = (EpochMeans(["loss"]) for _ in STAGES)
        self.example_input_array = torch.zeros(2, *self.input_shape)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Restore a trained model; loads plain data only (weights_only), never code."""
        kwargs["weights_only"] = True
        with checkpoint_errors(checkpoint_path):
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def setup(self, stage: str) -> None:
        """On CUDA, channels-last memory for convolutional nets; `compile=True`: torch.compile."""
        on_cuda = self.trainer.strategy.root_device.type == "cuda"
        uses_conv = any(isinstance(m, nn.Conv2d) for m in self.modules())
        if on_cuda and uses_conv and not self.channels_last:
            self.channels_last = True
            self.to(memory_format=torch.channels_last)
        if self.compile_model and self._compiled_call_impl is None:
            self.compile()  # in place: parameter names and checkpoints stay as they are

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy on logits, or mean squared error for regression."""
        if self.task == "classification":
            return F.cross_entropy(output, target)
        return F.mse_loss(output, target.view_as(output))

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, output, target) for one batch; the target shaped like the output for regression."""
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        output = self(x)
        if self.task == "regression":
            y = y.view_as(output)
        return self.loss(output, y), output, y

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _, _ = self._step(batch)
        self.log_train_step({"loss": loss}, len(batch[0]), prog_bar=("loss",))
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        loss, output, y = self._step(batch)
        getattr(self, f"{stage}_means").add({"loss": loss}, len(y))
        self.metrics[stage].update(output.argmax(-1) if self.task == "classification" else output, y)
        return loss

    def _log_evaluation(self, stage: str) -> None:
        self.log_epoch(stage, self.metrics[stage].compute())
        self.metrics[stage].reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.optimizer_config, params=self.parameters())
        if not self.scheduler_config:
            return optimizer
        config = dict(self.scheduler_config)
        interval = config.pop("interval", "epoch")
        monitor = config.pop("monitor", "val/loss")
        scheduler = instantiate(config, optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval, "monitor": monitor},
        }
