"""SLURM: a job that Lightning requeued (preemption or time limit) resumes in its own folder;
the launching process follows its jobs where SLURM keeps no accounting."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.plugins.environments import SLURMEnvironment
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

log = logging.getLogger(__name__)


def slurm_requeued(trainer: L.Trainer) -> bool:
    """On SLURM, whether the run folder holds the hpc checkpoint Lightning saved before it
    requeued this job (SLURMEnvironment auto_requeue); `trainer.fit` resumes from it by itself."""
    return SLURMEnvironment.detect() and any(Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt"))


class SqueueWhenNoAccounting(SlurmInfoWatcher):
    """submitit's job watcher asks `sacct`, which fails where SLURM keeps no accounting (no
    slurmdbd, common on small clusters): submitit then warns on every poll and never learns
    that a job was cancelled or killed. This one says so once and asks `squeue` instead."""

    accounting = True

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        if self.accounting:
            answer = subprocess.run(command, capture_output=True, text=True, check=False)
            if answer.returncode == 0:
                self._info_dict.update(self.read_info(answer.stdout))
                self._last_status_check = time.time()
                return
            self.accounting = False
            reason = (answer.stderr.strip().splitlines() or ["failed"])[0]
            log.warning("SLURM accounting is off (sacct: %s): job states come from squeue", reason)
        jobs = ",".join(sorted({job.split("_")[0] for job in self._registered - self._finished}))
        squeue = ["squeue", "--states=all", "--noheader", "--format=%i|%T|%N", "--jobs", jobs]
        answer = subprocess.run(squeue, capture_output=True, text=True, check=False)
        if answer.returncode == 0:
            self._info_dict.update(self.read_info("JobID|State|NodeList\n" + answer.stdout))
        self._last_status_check = time.time()


def follow_jobs_without_accounting() -> None:
    """Make submitit's SLURM jobs (hydra/launcher=slurm) use SqueueWhenNoAccounting."""
    if not isinstance(SlurmJob.watcher, SqueueWhenNoAccounting):
        SlurmJob.watcher = SqueueWhenNoAccounting(delay_s=60)
