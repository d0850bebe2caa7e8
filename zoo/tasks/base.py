"""The one base under every task: optimizers from plain configs, compile, channels-last,
per-step logging without host syncs, safe loading, and the checkpoint monitor."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, ClassVar

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from torch import Tensor, nn
from torchmetrics import MeanMetric

from zoo.errors import CheckpointError, ConfigError
from zoo.lightning_private import is_compiled, logger_writes_this_step
from zoo.loading import check_recorded_shapes, checkpoint_errors, read_checkpoint

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3}
SCHEDULER_KEYS = ("interval", "monitor")  # Lightning's scheduler options, not the scheduler's
SCHEDULERS = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
# Lightning's load_from_checkpoint options (not the task's hyper-parameters).
LOAD_OPTIONS = ("map_location", "hparams_file", "strict", "weights_only")
# The checkpoint `Task.load_from_checkpoint` is rebuilding a task from, while it does.
LOADING: ContextVar[str | None] = ContextVar("zoo_loading_checkpoint", default=None)


def nested_target(value: Any, where: str) -> str | None:
    """Where under `value` (a config's option) a `_target_` hides, or None."""
    if isinstance(value, Mapping):
        if "_target_" in value:
            return where
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    return next((found for k, v in items if (found := nested_target(v, f"{where}.{k}"))), None)


def imported(path: str) -> Any:
    """The object at dotted `path` in modules already imported, or None; never imports."""
    parts, found = path.split("."), None
    for end in range(1, len(parts) + 1):
        found = sys.modules.get(".".join(parts[:end])) or getattr(found, parts[end - 1], None)
        if found is None:
            return None
    return found


def config_class(config: dict[str, Any], base: type | tuple[type, ...], what: str) -> type:
    """The class a `_target_` config names, refused unless it is a `base`: a config read from a
    checkpoint must never call arbitrary code. Options may not name classes themselves (Hydra
    would call them), and while a checkpoint loads only classes already imported count."""
    target, loading = str(config.get("_target_")), LOADING.get()
    nested = next(
        (
            found
            for key, value in config.items()
            if key != "_target_" and (found := nested_target(value, f"{what}.{key}"))
        ),
        None,
    )
    problem = None
    if nested:
        problem = f"{nested} names a class (_target_); only {what} itself may"
    elif loading is not None and not isinstance(imported(target), type):
        problem = f"{what} {target!r} is not a class the zoo has imported (loading imports none)"
    else:
        try:
            cls = get_class(target)
        except Exception:  # noqa: BLE001 - hydra raises ImportError, ValueError, AttributeError
            problem = f"{what} {target!r} is not a class that can be imported"
        else:
            if not issubclass(cls, base):
                problem = f"{what} {target!r} is not a {getattr(base, '__name__', base)}"
    if problem is None:
        return cls
    if loading is not None:
        raise CheckpointError(f"refusing to load {loading}: {problem}")
    raise ValueError(problem)  # a config value, so ValueError like every other one


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


def uses_channels_last(module: nn.Module, device: torch.device) -> bool:
    """Whether `module` trains in channels-last memory on `device`: on CUDA, when it has
    convolutions (transposed ones too: a DCGAN generator alone)."""
    convolutions = (nn.Conv2d, nn.ConvTranspose2d)
    return device.type == "cuda" and any(isinstance(m, convolutions) for m in module.modules())


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
    # Under DDP: whether a training step has backward passes that leave parameters unused.
    ddp_finds_unused_parameters: ClassVar[bool] = False

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
        """Restore a trained task of this class: plain data only (weights_only), the class the
        checkpoint records checked (`recorded_task`), never code named by the file."""
        checkpoint = read_checkpoint(checkpoint_path)
        recorded_task(checkpoint, checkpoint_path, cls)
        if hasattr(checkpoint_path, "seek"):  # a file object: Lightning reads it again
            checkpoint_path.seek(0)
        kwargs["weights_only"] = True
        loading = LOADING.set(str(checkpoint_path))
        try:
            hparams = {**(checkpoint.get("hyper_parameters") or {}), **kwargs}
            hparams = {k: v for k, v in hparams.items() if k not in LOAD_OPTIONS}
            check_recorded_shapes(checkpoint, lambda: cls(**hparams), checkpoint_path)
            with checkpoint_errors(checkpoint_path):
                return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        finally:
            LOADING.reset(loading)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the task class, so `zoo.load` restores any checkpoint without being told, and
        the configured learning rates, so a resume can tell when they change."""
        checkpoint["zoo_class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        checkpoint["zoo_lrs"] = self.configured_lrs()
        checkpoint["zoo_optimizers"] = self.optimizer_classes()
        datamodule = self.trainer.datamodule if self.trainer_attached() else None
        normalisation = getattr(datamodule, "image_normalisation", self.image_normalisation)
        if normalisation is not None:  # how the data normalised images, for predict.py
            checkpoint["zoo_image_normalisation"] = normalisation

    def configured_lrs(self) -> list[float | None]:
        return [config.get("lr") for config in self.optimizer_configs().values()]

    def optimizer_classes(self) -> list[str]:
        return [str(config.get("_target_")) for config in self.optimizer_configs().values()]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resume whose configured learning rate differs from the checkpoint's run (lower
        after a NaN, say) applies it: each such optimizer's lr is scaled by new / old on
        train start, once the optimizer state (which holds the old lr) is restored. The data's
        image normalisation, where the checkpoint records it, becomes `image_normalisation`."""
        self.image_normalisation = checkpoint.get("zoo_image_normalisation")
        saved_classes = checkpoint.get("zoo_optimizers", self.optimizer_classes())
        if self.trainer_attached() and saved_classes != self.optimizer_classes():
            raise CheckpointError(
                f"cannot resume with optimizer {', '.join(self.optimizer_classes())}: the "
                f"checkpoint's state is for {', '.join(saved_classes)}; resume with its optimizer"
            )
        saved = checkpoint.get("zoo_lrs") or []
        self.lr_factors = [
            new / old if old and new and new != old else None
            for old, new in zip(saved, self.configured_lrs())
        ]

    def trainer_attached(self) -> bool:
        """Whether a Trainer drives this task (a resume), not a bare load_from_checkpoint."""
        return self._trainer is not None

    def on_train_start(self) -> None:
        self.compile_in_place()
        self.apply_new_learning_rates()

    def apply_new_learning_rates(self) -> None:
        """Scale each optimizer whose configured lr changed since the checkpoint (and its
        schedule) by new / old, now that the restored optimizer state holds the old one."""
        factors = dict(zip(self.trainer.optimizers, getattr(self, "lr_factors", [])))
        for optimizer, factor in factors.items():
            if factor:
                for group in optimizer.param_groups:
                    group["lr"] *= factor
                    if "initial_lr" in group:
                        group["initial_lr"] *= factor
        for config in self.trainer.lr_scheduler_configs:
            factor = factors.get(config.scheduler.optimizer)
            if factor and hasattr(config.scheduler, "base_lrs"):
                config.scheduler.base_lrs = [lr * factor for lr in config.scheduler.base_lrs]
        self.lr_factors = []

    # --- device set-up -------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """On CUDA, channels-last memory for convolutional nets (`uses_channels_last`). With
        `compile=True`, each network is compiled in place (parameter names and checkpoints stay
        as they are): at train start when fitting, after the model summary's forward pass, which
        would otherwise compile a graph of its own; here for other stages."""
        if not self.channels_last and uses_channels_last(self, self.trainer.strategy.root_device):
            self.channels_last = True
            self.to(memory_format=torch.channels_last)
        if stage != "fit":
            self.compile_in_place()

    def compile_in_place(self) -> None:
        """`compile=True`: torch.compile each network in place (once)."""
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

    def on_validation_end(self) -> None:
        """After the sanity validation, before any training: a plateau scheduler's monitor must
        be a metric this task logs (Lightning would only fail at the first epoch's end)."""
        monitor = (self.scheduler_config or {}).get("monitor")
        logged = self.trainer.callback_metrics
        if self.trainer.sanity_checking and monitor and logged and monitor not in logged:
            names = ", ".join(sorted(k for k in logged if "/" in k))
            raise ConfigError(f"scheduler.monitor={monitor} is never logged; the task logs {names}")

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")
        if not self.automatic_optimization:  # Lightning steps schedulers only in automatic mode
            self.step_schedulers()

    # --- optimizers ------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        networks = self.networks()
        named = len(networks) > 1  # several: each network's rate is logged under its name
        optimizers = [
            instantiate(config, _partial_=True)(
                [{"params": networks[name].parameters(), "name": name}]
                if named
                else networks[name].parameters()
            )
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


def recorded_task(checkpoint: dict[str, Any], path: Any, caller: type[Task] = Task) -> type[Task]:
    """The task class a checkpoint records (`zoo_class`): one of the zoo's own (zoo.tasks.TASKS,
    a fixed list: nothing is imported by name) that is a `caller`, or the class `caller` itself
    when code names it (`MyTask.load_from_checkpoint`); else one CheckpointError line."""
    from zoo.tasks import TASKS  # here: zoo.tasks imports this module

    recorded = checkpoint.get("zoo_class")
    if recorded is None:
        raise CheckpointError(f"{path} is not a zoo checkpoint (it records no zoo task class)")
    own = caller is not Task and recorded == f"{caller.__module__}.{caller.__qualname__}"
    cls = caller if own else TASKS.get(recorded) if isinstance(recorded, str) else None
    if cls is None:
        names = ", ".join(sorted(task.__name__ for task in TASKS.values()))
        raise CheckpointError(
            f"{path} is not a zoo checkpoint: it names {recorded!r} as its task, not one of the "
            f"zoo's ({names})"
        )
    if not issubclass(cls, caller):
        raise CheckpointError(
            f"{path} holds a task of class {cls.__name__}, not {caller.__name__}: load it "
            f"with zoo.load(path) or {cls.__name__}.load_from_checkpoint"
        )
    return cls
