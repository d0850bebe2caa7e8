"""Small callbacks: the best checkpoint by the task's monitor, finite loss, mid-epoch checkpoints,
Ctrl-C and SIGTERM, run statistics."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
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
    metric the task declares (`task.monitor`), the way the task declares is better
    (`task.monitor_mode()`: "max" for a metric that grows better up)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.monitor is None and hasattr(pl_module, "monitor_mode"):
            self.monitor = pl_module.monitor
            self.mode = pl_module.monitor_mode()  # and the worst score to beat, as __init__ sets
            self.kth_value = torch.tensor(-torch.inf if self.mode == "max" else torch.inf)
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


class LastCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint keeping checkpoints/last.ckpt only: at every epoch end, after
    `every_n_seconds` of training and/or every `every_n_train_steps` steps, and on Ctrl-C or
    SIGTERM (printing the command that resumes), so `ckpt_path=last` resumes any interruption.

    What it adds to the library's (tests/test_resume.py): last.ckpt at every epoch end (the
    library's `save_last` follows the best checkpoint, so a run whose score stopped improving kept
    a stale last.ckpt); a training-time clock without a host sync per step (the library
    broadcasts its clock's decision every step; here the clock is read every CLOCK_STEPS steps
    and, with several processes, rank 0's reading travels asynchronously on a CPU (gloo) group and
    applies CLOCK_STEPS steps later); Ctrl-C stopping at the end of the step in progress, with the
    resume command. Writes are atomic (the trainer's AtomicCheckpointIO).
    """

    CLOCK_STEPS = 20

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_seconds: float | None = 60.0,
        every_n_train_steps: int | None = None,
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
        super().__init__(
            dirpath=dirpath,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps or 0,
            enable_version_counter=False,  # overwrite last.ckpt, never last-v1.ckpt
        )
        self.every_n_seconds = every_n_seconds
        self.last_write = time.monotonic()
        self.clock: Any = None  # (work, decision) of rank 0's clock reading in flight (DDP)
        self.clock_group: Any = None
        self.overrides: list[str] | None = None  # the run's command line, read at fit start
        self.interrupted = False  # Ctrl-C seen; stop at the end of the step in progress
        self.previous_sigint: Any = None  # the SIGINT handler to put back after fit

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"  # not the library's, which would equal another ModelCheckpoint's

    def save(self, trainer: L.Trainer) -> Path | None:
        """Write last.ckpt now (with optimizer, loop, loader and random states)."""
        if self.dirpath is None:
            return None
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self.last_write = time.monotonic()
        return Path(self.last_model_path)

    def saving(self, trainer: L.Trainer) -> bool:
        return (
            trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
            and not trainer.fast_dev_run
        )

    def due(self, trainer: L.Trainer) -> bool:
        """Whether this training step should write last.ckpt (the same answer in every process,
        without a host sync: see the class's docstring)."""
        step = trainer.global_step
        if not step:
            return False
        if self._every_n_train_steps and step % self._every_n_train_steps == 0:
            return True
        if self.every_n_seconds is None or step % self.CLOCK_STEPS:
            return False
        late = time.monotonic() - self.last_write >= self.every_n_seconds
        return late if trainer.world_size == 1 else self.shared_clock(trainer, late)

    def shared_clock(self, trainer: L.Trainer, late: bool) -> bool:
        """Rank 0's reading from CLOCK_STEPS steps ago (complete by now), and send this one."""
        import torch.distributed as dist

        if self.clock_group is None:
            self.clock_group = dist.new_group(backend="gloo")
        decided = False
        if self.clock is not None:
            work, decision = self.clock
            work.wait()
            decided = bool(decision.item())
        decision = torch.tensor([late and trainer.is_global_zero], dtype=torch.uint8)
        work = dist.broadcast(decision, src=0, group=self.clock_group, async_op=True)
        self.clock = (work, decision)
        return decided

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.stop_if_interrupted()
        if self.due(trainer) and self.saving(trainer):  # (saving's enum compare is the slower)
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saving(trainer) and self._should_save_on_train_epoch_end(trainer):
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saving(trainer) and not self._should_save_on_train_epoch_end(trainer):
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Training ended between epoch ends (max_steps, max_time): last.ckpt holds its end."""
        if self._last_global_step_saved != trainer.global_step or not self.last_model_path:
            self.save(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.stop_if_interrupted()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.last_write = time.monotonic()
        self.clock = None

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


class RandomStates(Callback):
    """Checkpoints hold every process's random states (torch, CUDA, numpy, Python, and the
    task's own torch.Generator attributes, a GAN's noise), and a resumed fit puts them back when
    training starts (after the sanity check), so dropout, noise and augmentation draw what the
    uninterrupted run drew."""

    KEY = "zoo_random_states"

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] | None = None

    @staticmethod
    def collect(pl_module: L.LightningModule) -> dict[str, Any]:
        """This process's random states, as plain data (weights_only loading reads them)."""
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        generators = {
            name: value.get_state()
            for name, value in vars(pl_module).items()
            if isinstance(value, torch.Generator)
        }
        return {
            "generators": generators,
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
            "python": random.getstate(),
        }

    @staticmethod
    def restore(states: dict[str, Any], pl_module: L.LightningModule) -> None:
        for name, state in states["generators"].items():
            getattr(pl_module, name).set_state(state)
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        kind, keys, position, has_gauss, gauss = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        version, internal, gauss_next = states["python"]
        random.setstate((version, tuple(internal), gauss_next))

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        mine = self.collect(pl_module)
        if trainer.world_size > 1:
            import torch.distributed as dist

            everyone: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(everyone, mine)  # checkpoints are written collectively
            checkpoint[self.KEY] = everyone
        else:
            checkpoint[self.KEY] = [mine]

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        self.pending = checkpoint.get(self.KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        states, self.pending = self.pending, None
        if states and trainer.global_rank < len(states):
            self.restore(states[trainer.global_rank], pl_module)


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
