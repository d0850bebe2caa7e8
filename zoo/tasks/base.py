"""The one base under every task: optimizers from plain configs, compile, channels-last,
per-step logging without host syncs, safe loading, and the checkpoint monitor."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from torch import Tensor, nn
from torchmetrics import MeanMetric

from zoo.checkpoints import checkpoint_errors
from zoo.lightning_private import is_compiled, logger_writes_this_step

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3}
SCHEDULER_KEYS = ("interval", "monitor")  # Lightning's scheduler options, not the scheduler's
SCHEDULERS = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def config_class(config: dict[str, Any], base: type | tuple[type, ...], what: str) -> type:
    """The class a `_target_` config names, refused unless it is a `base`: a config read from a
    checkpoint must never call arbitrary code."""
    target = config.get("_target_")
    try:
        cls = get_class(str(target))
    except Exception:  # noqa: BLE001 - hydra raises ImportError, ValueError, AttributeError
        raise ValueError(f"{what} {target!r} is not a class that can be imported") from None
    if not issubclass(cls, base):  # a config value, so ValueError like every other one
        raise ValueError(  # noqa: TRY004
            f"{what} {target!r} is not a {getattr(base, '__name__', base)}"
        )
    return cls


def build_net(config: dict[str, Any], **data: Any) -> nn.Module:
    """The network a `_target_` config names, given those facts of the data (`input_shape`,
    `num_outputs`, ...) that its constructor takes."""
    cls = config_class(config, nn.Module, "model")
    takes = inspect.signature(cls).parameters
    return instantiate(config, **{k: v for k, v in data.items() if k in takes}, _convert_="all")


def check_optimizer(optimizer: dict[str, Any]) -> None:
    """Fail now, with one clear line, on an optimizer config torch would reject later."""
    lr = optimizer.get("lr")
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"optimizer.lr must be > 0, got {lr!r}")
    config_class(optimizer, torch.optim.Optimizer, "optimizer")
    try:
        instantiate(optimizer, params=[nn.Parameter(torch.zeros(1))])
    except Exception as error:  # noqa: BLE001 - torch/hydra raise TypeError, ValueError, ...
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


class Task(L.LightningModule):
    """What every kind of learning shares; subclasses own their networks, loss and metrics.

    Optimizer and scheduler arrive as plain config dicts (Hydra `_target_` form) and are built in
    `configure_optimizers`, so checkpoints hold only plain data. `monitor` names the metric the
    best checkpoint is chosen by (lower is better). Per-step values go into torchmetrics means
    (`<stage>_means`, no host sync); `self.log` runs only on the steps Lightning's logger writes
    (`train/<name>_step`) and once per epoch (`<stage>/<name>`, `train/<name>_epoch`).
    """

    monitor: ClassVar[str] = "val/loss"
    train_values: ClassVar[tuple[str, ...]] = ("loss",)  # logged as train/<name>_step, _epoch
    eval_values: ClassVar[tuple[str, ...]] = ("loss",)  # val/<name>, test/<name>

    def __init__(
        self,
        input_shape: tuple[int, ...],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.optimizer_config = dict(optimizer or DEFAULT_OPTIMIZER)
        self.scheduler_config = dict(scheduler) if scheduler else None
        check_optimizer(self.optimizer_config)
        if self.scheduler_config:
            config_class(self.scheduler_config, SCHEDULERS, "scheduler")
        self.compile_networks = compile  # nn.Module.compile is a method: keep that name free
        self.channels_last = False  # set in `setup` for convolutional nets on CUDA
        self.references: dict[str, float] = {}  # reference points the data offers for the scores
        # How the data normalised images (its `image_normalisation`), kept in checkpoints.
        self.image_normalisation: dict[str, list[float]] | None = None
        self.train_means = EpochMeans(list(self.train_values))
        self.val_means, self.test_means = (EpochMeans(list(self.eval_values)) for _ in range(2))

    # --- what subclasses say -------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        """The task's networks by attribute name (`net`, or `generator` and `discriminator`)."""
        raise NotImplementedError

    def optimizer_configs(self) -> dict[str, dict[str, Any]]:
        """One optimizer config per network name that gets its own optimizer."""
        return {name: self.optimizer_config for name in self.networks()}

    @property
    def name(self) -> str:
        """What the summary line and the HPARAMS tab call this model."""
        return " + ".join(type(net).__name__ for net in self.networks().values())

    @staticmethod
    def network(net: dict[str, Any] | nn.Module, **data: Any) -> nn.Module:
        """`net` itself, or the network its config names, built for `data`'s facts. (A task
        given a module saves no `net` hyperparameter: its checkpoints need the module again.)"""
        return net if isinstance(net, nn.Module) else build_net(net, **data)

    # --- loading and saving ----------------------------------------------------------------
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Restore a trained task; loads plain data only (weights_only), never code."""
        kwargs["weights_only"] = True
        with checkpoint_errors(checkpoint_path):
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the task class, so `zoo.load` restores any checkpoint without being told."""
        checkpoint["zoo_class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        try:
            datamodule = self.trainer.datamodule
        except RuntimeError:  # a checkpoint saved without attaching this task to the trainer
            datamodule = None
        normalisation = getattr(datamodule, "image_normalisation", self.image_normalisation)
        if normalisation is not None:
            checkpoint["zoo_image_normalisation"] = normalisation

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The data's image normalisation, where the checkpoint records it (for predict.py)."""
        self.image_normalisation = checkpoint.get("zoo_image_normalisation")

    # --- device set-up -------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """On CUDA, channels-last memory for convolutional nets; `compile=True`: torch.compile
        each network in place (parameter names and checkpoints stay as they are)."""
        on_cuda = self.trainer.strategy.root_device.type == "cuda"
        uses_conv = any(isinstance(m, nn.Conv2d) for m in self.modules())
        if on_cuda and uses_conv and not self.channels_last:
            self.channels_last = True
            self.to(memory_format=torch.channels_last)
        if self.compile_networks:
            for net in self.networks().values():
                if not is_compiled(net):
                    net.compile()

    def prepare_input(self, x: Tensor) -> Tensor:
        """A batch of inputs in the memory layout the networks use."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # --- logging ---------------------------------------------------------------------------
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

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")
        if not self.automatic_optimization:  # Lightning steps schedulers only in automatic mode
            self.step_schedulers()

    # --- optimizers ------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        networks = self.networks()
        optimizers = [
            instantiate(config, params=networks[name].parameters())
            for name, config in self.optimizer_configs().items()
        ]
        if not self.scheduler_config:
            return optimizers
        config = {k: v for k, v in self.scheduler_config.items() if k not in SCHEDULER_KEYS}
        schedulers = [
            {
                "scheduler": instantiate(config, optimizer=optimizer),
                "interval": self.scheduler_config.get("interval", "epoch"),
                "monitor": self.scheduler_config.get("monitor", self.monitor),
            }
            for optimizer in optimizers
        ]
        return optimizers, schedulers

    def step_schedulers(self) -> None:
        """Manual optimization: step each scheduler once (plateau ones on the monitor)."""
        schedulers = self.lr_schedulers() or []
        monitor = (self.scheduler_config or {}).get("monitor", self.monitor)
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if monitor in self.trainer.callback_metrics:
                    scheduler.step(self.trainer.callback_metrics[monitor])
            else:
                scheduler.step()
