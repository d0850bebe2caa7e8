"""Test helper: a callback that plays SLURM's pre-preemption signal at a chosen step."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class SignalAtStep(Callback):
    """Send this process SIGUSR1 once training reaches `step` (unless an hpc checkpoint, from
    an earlier signal, is already there)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        done = any(Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt"))
        if trainer.global_step == self.step and not done:
            os.kill(os.getpid(), signal.SIGUSR1)
