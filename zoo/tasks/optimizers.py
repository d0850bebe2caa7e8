"""A task's optimizers and schedulers, built from plain configs in `configure_optimizers`, and
the learning rates a resume may change."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn

from zoo.errors import CheckpointError, ConfigError
from zoo.tasks.configs import RUN_STEPS_KEYS, SCHEDULER_KEYS


class Optimizers(L.LightningModule):
    """One optimizer per network that gets its own (`optimizer_configs`), each with the
    scheduler config's schedule; a resume with another configured lr applies it."""

    monitor: ClassVar[str] = "val/loss"
    optimizer_config: dict[str, Any]
    scheduler_config: dict[str, Any] | None

    def networks(self) -> dict[str, nn.Module]:
        """The task's networks by attribute name (`net`, or `generator` and `discriminator`)."""
        raise NotImplementedError

    def optimizer_configs(self) -> dict[str, dict[str, Any]]:
        """One optimizer config per network name that gets its own optimizer."""
        return {name: self.optimizer_config for name in self.networks()}

    def configured_lrs(self) -> list[float | None]:
        return [config.get("lr") for config in self.optimizer_configs().values()]

    def optimizer_classes(self) -> list[str]:
        return [str(config.get("_target_")) for config in self.optimizer_configs().values()]

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
        for key in RUN_STEPS_KEYS:  # null: the whole run's optimizer steps
            if key in config and config[key] is None:
                steps = self.trainer.estimated_stepping_batches
                if not math.isfinite(steps):
                    raise ConfigError(
                        f"scheduler.{key}=null needs a run of known length: set "
                        f"trainer.max_epochs or trainer.max_steps, or scheduler.{key}"
                    )
                config[key] = int(steps)
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

    def check_scheduler_monitor(self) -> None:
        """After the sanity validation, before any training: a plateau scheduler's monitor must
        be a metric this task logs (Lightning would only fail at the first epoch's end)."""
        monitor = (self.scheduler_config or {}).get("monitor")
        logged = self.trainer.callback_metrics
        if self.trainer.sanity_checking and monitor and logged and monitor not in logged:
            names = ", ".join(sorted(k for k in logged if "/" in k))
            raise ConfigError(f"scheduler.monitor={monitor} is never logged; the task logs {names}")

    # --- a resume with other learning rates -----------------------------------------------
    def restore_learning_rates(self, checkpoint: dict[str, Any], resuming: bool) -> None:
        """A resume whose configured learning rate differs from the checkpoint's run (lower
        after a NaN, say) applies it: each such optimizer's lr is scaled by new / old on
        train start (`apply_new_learning_rates`), once the optimizer state (which holds the
        old lr) is restored. A resume with another optimizer class is refused."""
        saved_classes = checkpoint.get("zoo_optimizers", self.optimizer_classes())
        if resuming and saved_classes != self.optimizer_classes():
            raise CheckpointError(
                f"cannot resume with optimizer {', '.join(self.optimizer_classes())}: the "
                f"checkpoint's state is for {', '.join(saved_classes)}; resume with its optimizer"
            )
        saved = checkpoint.get("zoo_lrs") or []
        self.lr_factors = [
            new / old if old and new and new != old else None
            for old, new in zip(saved, self.configured_lrs())
        ]

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
