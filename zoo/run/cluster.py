"""SLURM: a job that Lightning requeued (preemption or time limit) resumes in its own folder."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.plugins.environments import SLURMEnvironment


def slurm_requeued(trainer: L.Trainer) -> bool:
    """On SLURM, whether the run folder holds the hpc checkpoint Lightning saved before it
    requeued this job (SLURMEnvironment auto_requeue); `trainer.fit` resumes from it by itself."""
    return SLURMEnvironment.detect() and any(Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt"))
