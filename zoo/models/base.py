"""The one training path shared by every supervised family."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import MeanSquaredError, MetricCollection
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


class SupervisedModule(L.LightningModule):
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

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        output = self(x)
        loss = self.loss(output, y)
        on_step = stage == "train"
        # sync_dist averages val/test loss over processes once per epoch; never per train step.
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True,
                 batch_size=len(x), sync_dist=not on_step)
        if stage in self.metrics:
            metrics = self.metrics[stage]
            prediction = output.argmax(-1) if self.task == "classification" else output
            metrics.update(prediction, y if self.task == "classification" else y.view_as(output))
            self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "test")

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
