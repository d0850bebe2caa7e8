"""The one base under every task, and what each task declares for the rest of the zoo.

Its collaborators: safe construction from configs (zoo.tasks.configs), epoch means and logging
(zoo.tasks.epochs), optimizers and resume learning rates (zoo.tasks.optimizers). Here: the
declarations, the registry of task classes (`TASKS`), safe loading, devices and compile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from zoo.errors import CheckpointError
from zoo.lightning_private import is_compiled
from zoo.loading import check_recorded_shapes, checkpoint_errors, read_checkpoint
from zoo.tasks.configs import (
    DEFAULT_OPTIMIZER,
    LOADING,
    SCHEDULER_KEYS,
    SCHEDULERS,
    build_net,
    check_optimizer,
    config_class,
    imported,
    nested_target,
)
from zoo.tasks.epochs import EpochLogging, EpochMeans
from zoo.tasks.optimizers import Optimizers

__all__ = [  # the names other modules import from here
    "DEFAULT_OPTIMIZER",
    "LOADING",
    "SCHEDULERS",
    "SCHEDULER_KEYS",
    "TASKS",
    "EpochMeans",
    "Task",
    "build_net",
    "check_optimizer",
    "config_class",
    "each_stage",
    "imported",
    "nested_target",
    "recorded_task",
    "register",
    "uses_channels_last",
]

# Lightning's load_from_checkpoint options (not the task's hyper-parameters).
LOAD_OPTIONS = ("map_location", "hparams_file", "strict", "weights_only")
# The registered task classes by dotted path (`register`): the only classes a checkpoint may name
# (its `zoo_class`; nothing is imported by name), and those whose declarations compare, the
# HPARAMS tab, search and the config checks read.
TASKS: dict[str, type[Task]] = {}


def each_stage(**higher_is_better: bool) -> dict[str, bool]:
    """{"val/<name>": ..., "test/<name>": ...} for each metric name given."""
    return {f"{s}/{name}": h for s in ("val", "test") for name, h in higher_is_better.items()}


def uses_channels_last(module: nn.Module, device: torch.device) -> bool:
    """Whether `module` trains in channels-last memory on `device`: on CUDA, when it has
    convolutions (transposed ones too: a DCGAN generator alone)."""
    convolutions = (nn.Conv2d, nn.ConvTranspose2d)
    return device.type == "cuda" and any(isinstance(m, convolutions) for m in module.modules())


def compile_options(device: torch.device) -> dict[str, Any]:
    """torch.compile's keyword arguments for a network that trains on `device`. On a CPU,
    random ops (dropout) call ATen's kernels as in eager mode (inductor's `fallback_random`):
    inductor's own CPU random numbers made a dropout ViT's compiled step slower than eager
    (bench/RESULTS.md), and ATen's keep a compiled run's dropout masks those of an eager one."""
    return {"options": {"fallback_random": True}} if device.type == "cpu" else {}


class Task(EpochLogging, Optimizers):
    """What every kind of learning shares; subclasses own their networks, loss and metrics,
    and declare (class attributes) what the rest of the zoo reads about them.

    Optimizer and scheduler arrive as plain config dicts (Hydra `_target_` form) and are built in
    `configure_optimizers`, so checkpoints hold only plain data. `monitor` names the metric the
    best checkpoint is chosen by. Per-step values go into torchmetrics means (`<stage>_means`,
    no host sync); `self.log` runs only on the steps Lightning's logger writes.
    """

    # --- declarations: what compare, HPARAMS, search, config checks, resume, predict, sample
    # and export read (no list of metric names and no branch on a task's class elsewhere) ---
    # Every val/ and test/ metric the task may log -> whether higher is better (torchmetrics'
    # own `higher_is_better` where the metric is a torchmetrics object).
    higher_is_better: ClassVar[Mapping[str, bool]] = {"val/loss": False, "test/loss": False}
    # The headline validation and test metric: the first of these a run logs.
    val_metric: ClassVar[tuple[str, ...]] = ("val/loss",)
    test_metric: ClassVar[tuple[str, ...]] = ("test/loss",)
    monitor: ClassVar[str] = "val/loss"  # the best checkpoint's metric (see `monitor_mode`)
    # Options that configure a network (`_target_` + its options), built with `build_net`.
    network_options: ClassVar[tuple[str, ...]] = ("net",)
    # Options that are a network's learning rate: a resume may change them (as optimizer.lr).
    learning_rate_options: ClassVar[tuple[str, ...]] = ()
    # What its checkpoints can do: predict from inputs files (predict.py); sample "images" or
    # "text" (sample.py); export its forward with `example_input` (export.py, every task).
    predicts: ClassVar[bool] = False
    samples: ClassVar[str | None] = None
    # Under DDP: whether a training step has backward passes that leave parameters unused.
    ddp_finds_unused_parameters: ClassVar[bool] = False

    @classmethod
    def monitor_mode(cls) -> str:
        """ "max" when the monitored metric grows better up, else "min" (ModelCheckpoint's mode)."""
        return "max" if cls.higher_is_better.get(cls.monitor, False) else "min"

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
        self.compiled_first_step = False  # compile=True: this fit's first step has compiled
        self.channels_last = False  # set in `setup` for convolutional nets on CUDA
        self.references: dict[str, float] = {}  # reference points the data offers for the scores
        # How the data normalised images (its `image_normalisation`), kept in checkpoints.
        self.image_normalisation: dict[str, list[float]] | None = None
        self.make_means()

    # --- what subclasses say -------------------------------------------------------------
    @property
    def name(self) -> str:
        """What the summary line and the HPARAMS tab call this model."""
        return " + ".join(type(net).__name__ for net in self.networks().values())

    @staticmethod
    def network(net: dict[str, Any] | nn.Module, what: str = "model", **data: Any) -> nn.Module:
        """`net` itself, or the network its config names, built for `data`'s facts. (A task
        given a module saves no `net` hyperparameter: its checkpoints need the module again.)"""
        return net if isinstance(net, nn.Module) else build_net(net, what, **data)

    def example_input(self, batch: int = 2, generator: torch.Generator | None = None) -> Tensor:
        """A batch of `batch` inputs `forward` takes (random, from `generator`): for export."""
        return torch.randn(batch, *self.input_shape, generator=generator)

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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The resume's learning rates (`restore_learning_rates`); the data's image
        normalisation, where the checkpoint records it, becomes `image_normalisation`."""
        self.image_normalisation = checkpoint.get("zoo_image_normalisation")
        self.restore_learning_rates(checkpoint, resuming=self.trainer_attached())

    def trainer_attached(self) -> bool:
        """Whether a Trainer drives this task (a resume), not a bare load_from_checkpoint."""
        return self._trainer is not None

    def on_train_start(self) -> None:
        self.compile_in_place()
        self.apply_new_learning_rates()

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
        """`compile=True`: torch.compile each network in place (once), with compile_options."""
        if self.compile_networks:
            device = self.trainer.strategy.root_device if self.trainer_attached() else self.device
            options = compile_options(device)
            for net in self.networks().values():
                if not is_compiled(net):
                    net.compile(**options)

    def prepare_input(self, x: Tensor) -> Tensor:
        """A batch of inputs in the memory layout the networks use."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # --- hooks -----------------------------------------------------------------------------
    # With `compile=True` (torch.compiler.set_stance): validation and test run eagerly, as a
    # compiled graph pays for itself over many identical training steps, while each evaluation
    # (no grad, inference mode, a last batch of another size) would compile graphs of its own
    # for a few batches. Training compiles its first step; after it, a batch of another shape
    # (an epoch's short last batch) runs eagerly instead of compiling a graph for dynamic
    # shapes. Outside a fit, torch's default stance again.
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.compile_networks and not self.compiled_first_step:
            self.compiled_first_step = True
            self.set_compile_stance(False)

    def on_train_end(self) -> None:
        self.compiled_first_step = False
        self.set_compile_stance(False)

    def on_validation_start(self) -> None:
        self.set_compile_stance(True)

    def on_validation_end(self) -> None:
        self.set_compile_stance(False)
        self.check_scheduler_monitor()

    def on_test_start(self) -> None:
        self.set_compile_stance(True)

    def on_test_end(self) -> None:
        self.set_compile_stance(False)

    def set_compile_stance(self, evaluating: bool) -> None:
        """compile=True: evaluation's stance (eager), or training's (see above)."""
        if self.compile_networks:
            training = "eager_on_recompile" if self.compiled_first_step else "default"
            torch.compiler.set_stance("force_eager" if evaluating else training)

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")
        if not self.automatic_optimization:  # Lightning steps schedulers only in automatic mode
            self.step_schedulers()


def register(cls: type[Task]) -> type[Task]:
    """Register a task class in TASKS (a class decorator): `zoo.load` restores its
    checkpoints, and the rest of the zoo reads its declarations."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"only a subclass of zoo.tasks.Task can be registered, not {cls!r}")
    TASKS[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def recorded_task(checkpoint: dict[str, Any], path: Any, caller: type[Task] = Task) -> type[Task]:
    """The task class a checkpoint records (`zoo_class`): one of the registered TASKS (a
    fixed list: nothing is imported by name) that is a `caller`, or the class
    `caller` itself when code names it (`MyTask.load_from_checkpoint`); else one
    CheckpointError line."""
    recorded = checkpoint.get("zoo_class")
    if recorded is None:
        raise CheckpointError(f"{path} is not a zoo checkpoint (it records no zoo task class)")
    own = caller is not Task and recorded == f"{caller.__module__}.{caller.__qualname__}"
    cls = caller if own else TASKS.get(recorded) if isinstance(recorded, str) else None
    if cls is None:
        names = ", ".join(sorted({task.__name__ for task in TASKS.values()}))
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
