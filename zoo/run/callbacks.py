"""Small callbacks: the best checkpoint by the task's monitor, finite loss, mid-epoch checkpoints,
Ctrl-C and SIGTERM, run statistics."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, Timer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor

from zoo.errors import ConfigError
from zoo.lightning_private import logger_writes_this_step
from zoo.run.checkpoints import checkpoint_dir, hydra_overrides, resume_command


class LearningRates(LearningRateMonitor):
    """Lightning's LearningRateMonitor; an optimizer whose one parameter group has a `name` (a
    GAN's `generator`, `discriminator`) logs as `lr-<name>`, not `lr-Adam` and `lr-Adam-1`.
    (Overrides Lightning's private `_add_suffix`; tests/test_gan.py checks the names.)"""

    def _add_suffix(
        self, name: str, param_groups: list[dict], param_group_index: int, use_names: bool = True
    ) -> str:
        group_name = param_groups[param_group_index].get("name")
        if use_names and len(param_groups) == 1 and group_name:
            return f"{name.split('-', 1)[0]}-{group_name}"  # lr-generator
        return super()._add_suffix(name, param_groups, param_group_index, use_names)


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint; with `monitor` unset it keeps the best checkpoint by the
    metric the task declares (`task.monitor`: `val/loss`, GANs `val/fid`; lower is better)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.monitor is None:
            self.monitor = getattr(pl_module, "monitor", None)
        super().setup(trainer, pl_module, stage)

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A monitor the task never logs would keep no best checkpoint (Lightning only warns):
        refuse it after the sanity validation, before any training step."""
        logged = trainer.callback_metrics
        if self.monitor and logged and self.monitor not in logged:
            names = ", ".join(sorted(k for k in logged if "/" in k))
            raise ConfigError(
                f"callbacks.model_checkpoint.monitor={self.monitor} is never logged by "
                f"{type(pl_module).__name__}; it logs {names}"
            )


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stopped before the bad update."""


class FiniteLossGuard(Callback):
    """Stop with one clear line when the loss is NaN/inf or explodes (over `explode_factor` times
    the run's first loss, or 1), before a checkpoint keeps its weights.

    Each backward only updates an on-device flag (no host sync per step). The flag is read, and
    reduced over DDP processes so that all of them stop together, on the steps the logger writes,
    before validation, at epoch ends and before any checkpoint is written.
    """

    def __init__(self, explode_factor: float | None = 1e4) -> None:
        if explode_factor is not None and not (
            type(explode_factor) in (int, float) and explode_factor > 1
        ):
            raise ValueError(f"explode_factor must be a number > 1 or null, got {explode_factor!r}")
        self.explode_factor = explode_factor  # a loss this many times its first one: exploded
        self.nonfinite: Tensor | None = None  # any loss since the last check not finite
        self.first: Tensor | None = None  # the first such loss
        self.start: Tensor | None = None  # the run's first loss (at least 1), on the device

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor
    ) -> None:
        loss = loss.detach().float().mean()
        bad = ~torch.isfinite(loss)
        if self.explode_factor is not None:
            if self.start is None:
                self.start = torch.where(bad, 1.0, loss.abs()).clamp_min(1.0)
            bad = bad | (loss.abs() > self.explode_factor * self.start)
        if self.nonfinite is None:
            self.nonfinite, self.first = bad, loss
        else:
            self.first = torch.where(self.nonfinite, self.first, loss)
            self.nonfinite = self.nonfinite | bad

    def check(self, trainer: L.Trainer) -> None:
        """Raise NonFiniteLossError in every process if a loss in any process was not finite."""
        if self.nonfinite is None:
            return
        anywhere = trainer.strategy.reduce(self.nonfinite.float(), reduce_op="sum")
        if not anywhere:  # one host sync, on a logging step
            self.nonfinite = None
            return
        lrs = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
        lr = ", ".join(f"{value:g}" for value in lrs) or "?"
        folder = checkpoint_dir(trainer)
        kept = (
            f"; last good checkpoint: {folder / 'last.ckpt'}"
            if folder and (folder / "last.ckpt").exists()
            else ""
        )
        value = self.first.item() if self.nonfinite else "not finite in another process"
        if self.nonfinite and torch.isfinite(self.first) and self.start is not None:
            value = f"{value:.4g}, over {self.explode_factor:g} times its first value"
        raise NonFiniteLossError(
            f"training loss became {value} at step {trainer.global_step} or shortly before "
            f"(epoch {trainer.current_epoch}); probable cause: learning rate too high (lr={lr}) "
            f"or bad input values; training stopped{kept}"
        )

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if logger_writes_this_step(trainer):
            self.check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation runs inside the training epoch: no non-finite weights into it (a GAN's FID
        # on NaN features crashed inside LAPACK, a segfault, not an exception).
        self.check(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        self.check(trainer)


class LastCheckpoint(Callback):
    """Write checkpoints/last.ckpt during epochs and on Ctrl-C or SIGTERM.

    Lightning's ModelCheckpoint writes last.ckpt at epoch ends; this one lets a run killed
    mid-epoch resume close to where it stopped: after `every_n_seconds` of training (the clock is
    read every CLOCK_STEPS steps, rank 0's reading decides for all processes) and/or every
    `every_n_train_steps` steps. Time, not steps, by default: a write costs as much as many small
    steps (bench/RESULTS.md). Writes are atomic (the trainer's AtomicCheckpointIO), so a kill
    during a write never leaves a truncated last.ckpt.
    """

    CLOCK_STEPS = 20

    def __init__(
        self, every_n_seconds: float | None = 60.0, every_n_train_steps: int | None = None
    ) -> None:
        if every_n_seconds is not None and not (
            type(every_n_seconds) in (int, float) and every_n_seconds > 0
        ):
            raise ValueError(
                f"every_n_seconds must be a number > 0 or null, got {every_n_seconds!r}"
            )
        if every_n_train_steps is not None and (
            not isinstance(every_n_train_steps, int) or every_n_train_steps < 0
        ):
            raise ValueError(
                f"every_n_train_steps must be an integer >= 0 or null, got {every_n_train_steps!r}"
            )
        self.every_n_seconds = every_n_seconds
        self.every_n_train_steps = every_n_train_steps
        self.last_write = time.monotonic()
        self.overrides: list[str] | None = None  # the run's command line, read at fit start
        self.interrupted = False  # Ctrl-C seen; stop at the end of the step in progress
        self.previous_sigint: Any = None  # the SIGINT handler to put back after fit

    def save(self, trainer: L.Trainer) -> Path | None:
        """Write last.ckpt (atomically: the trainer's AtomicCheckpointIO) into the
        ModelCheckpoint's folder."""
        folder = checkpoint_dir(trainer)
        if folder is None:
            return None
        path = folder / "last.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # with optimizer and loop state
        self.last_write = time.monotonic()
        return path

    def due(self, trainer: L.Trainer) -> bool:
        """Whether this training step should write last.ckpt (the same answer in every process)."""
        step = trainer.global_step
        if not step:
            return False
        if self.every_n_train_steps and step % self.every_n_train_steps == 0:
            return True
        if self.every_n_seconds is None or step % self.CLOCK_STEPS:
            return False
        return trainer.strategy.broadcast(
            time.monotonic() - self.last_write >= self.every_n_seconds
        )

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.stop_if_interrupted()
        if self.due(trainer):
            self.save(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.stop_if_interrupted()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.last_write = time.monotonic()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = checkpoint_dir(trainer)
        self.overrides = hydra_overrides(folder.parent) if folder else None
        self.interrupted = False
        self.previous_sigint = None
        if threading.current_thread() is threading.main_thread():
            self.previous_sigint = signal.signal(signal.SIGINT, self.note_interrupt)

    def note_interrupt(self, signum: int, frame: Any) -> None:
        """Ctrl-C during fit: stop at the end of the step in progress, like SIGTERM, not at
        whatever line runs (a KeyboardInterrupt inside a library can leave it locked and the
        process hung at exit). A second Ctrl-C stops at once."""
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True

    def stop_if_interrupted(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.restore_sigint()

    def restore_sigint(self) -> None:
        if self.previous_sigint is not None:
            signal.signal(signal.SIGINT, self.previous_sigint)
            self.previous_sigint = None

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        """Every checkpoint keeps the run's command-line overrides, to say how to resume it."""
        if self.overrides is not None:
            checkpoint["zoo_overrides"] = self.overrides

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # Ctrl-C, or SIGTERM (kill, Docker, batch schedulers; Lightning raises SIGTERMException
        # after the step in progress). While fitting, also during its validation passes.
        self.restore_sigint()
        stopped = isinstance(exception, (KeyboardInterrupt, SIGTERMException))
        if stopped and trainer.state.fn == TrainerFn.FITTING:
            if trainer.world_size > 1:  # saving is a collective; other processes may be anywhere
                if trainer.is_global_zero:
                    print(
                        f"interrupted at step {trainer.global_step}: not saved (DDP); resume "
                        "from the last checkpoint written during training (ckpt_path=last)"
                    )
                return
            path = self.save(trainer)
            if path is not None:
                print(
                    f"interrupted at step {trainer.global_step}: checkpoint saved to {path}; "
                    f"resume with: {resume_command(path, self.overrides)}"
                )


class RunStats(Timer):
    """Lightning's Timer (the training time, kept across resumes); adds the count of training
    samples, and logs run/parameters, run/fit_seconds, run/samples_per_second and run/epochs
    when training ends. (Not ThroughputMonitor: it synchronises CUDA after every step.)"""

    def __init__(self) -> None:
        super().__init__()
        self.samples = 0  # training samples seen by this process, also before a resume

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, *args)
        self.samples += len(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        seconds = self.time_elapsed("train")
        stats = {
            "run/parameters": float(sum(p.numel() for p in pl_module.parameters())),
            "run/fit_seconds": seconds,
            "run/samples_per_second": self.samples / seconds if seconds > 0 else 0.0,
            "run/epochs": float(trainer.current_epoch),
        }
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"samples": self.samples}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.samples = state_dict.get("samples", 0)
