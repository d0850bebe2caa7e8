"""Test helpers: callbacks that play, or wait for, SLURM's pre-preemption signal at a step."""

from __future__ import annotations

import os
import signal
import time
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


class WaitForSignalAtStep(Callback):
    """On a SLURM job's first attempt, stop at `step`: write a file named after the job's id
    into `flags` (holding its array's id, the sweep's), then wait (up to `wait_s`) for SLURM's
    SIGUSR1, sent by `scancel --signal=USR1` or before the time limit (--signal=USR1@N). A
    requeued attempt (SLURM_RESTART_COUNT > 0) runs through."""

    def __init__(self, step: int, flags: str, wait_s: float = 150) -> None:
        self.step, self.flags, self.wait_s = step, Path(flags), wait_s

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step != self.step or os.environ.get("SLURM_RESTART_COUNT", "0") != "0":
            return
        self.flags.mkdir(parents=True, exist_ok=True)
        sweep = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ["SLURM_JOB_ID"])
        (self.flags / os.environ["SLURM_JOB_ID"]).write_text(f"{sweep}\n")
        end = time.monotonic() + self.wait_s
        while time.monotonic() < end:  # the signal's handler runs in here
            time.sleep(0.2)
