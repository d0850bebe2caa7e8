"""SLURM: a job that Lightning requeued (preemption or time limit) resumes in its own folder;
the launching process follows its jobs where SLURM keeps no accounting."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from zoo.run.folders import submitit_jobs, sweep_summary

log = logging.getLogger(__name__)


def slurm_requeued(trainer: L.Trainer) -> bool:
    """On SLURM, whether the run folder holds the hpc checkpoint Lightning saved before it
    requeued this job (SLURMEnvironment auto_requeue); `trainer.fit` resumes from it by itself."""
    return SLURMEnvironment.detect() and any(Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt"))


class SqueueWhenNoAccounting(SlurmInfoWatcher):
    """submitit's job watcher asks `sacct`, which fails where SLURM keeps no accounting (no
    slurmdbd, common on small clusters): submitit then warns on every poll and never learns
    that a job was cancelled or killed. This one says so once and asks `squeue` instead; a job
    squeue no longer lists (SLURM forgets ended jobs after MinJobAge) is PURGED, ended. It uses
    submitit's private watcher fields, here only."""

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
            listed = self.read_info("JobID|State|NodeList\n" + answer.stdout)
            for job in self._registered - self._finished - set(listed):
                listed[job] = {"JobID": job, "State": "PURGED", "NodeList": ""}
            self._info_dict.update(listed)
        self._last_status_check = time.time()


def follow_slurm_jobs() -> None:
    """For hydra/launcher=slurm, in the launching process (the SlurmSweeps Hydra callback calls
    it before Hydra starts the launcher): follow the jobs without accounting too
    (SqueueWhenNoAccounting), and where jobs end without a result (cancelled, killed at their
    time limit) wait for the others and end with the sweep's summary and exit code 2, not with
    the first such job's traceback. Hydra takes launchers only from its plugin package, so this
    wraps the plugin's `launch` rather than subclassing it."""
    if not isinstance(SlurmJob.watcher, SqueueWhenNoAccounting):
        SlurmJob.watcher = SqueueWhenNoAccounting(delay_s=15)  # squeue is cheap
    plugin = submitit_launcher.SlurmLauncher
    if getattr(plugin.launch, "summarises", False):
        return
    launch = plugin.launch

    def summarising_launch(
        self: submitit_launcher.SlurmLauncher,
        job_overrides: Sequence[Sequence[str]],
        initial_job_idx: int,
    ) -> Sequence[JobReturn]:
        try:
            return launch(self, job_overrides, initial_job_idx)
        except FailedJobError:  # the job's own error, with its traceback
            raise
        except UncompletedJobError:
            sweep = Path(str(self.config.hydra.sweep.dir))
            states = wait_for_jobs(submitit_jobs(sweep / ".submitit"))
            print(sweep_summary(sweep, states)[0])
            raise SystemExit(2) from None

    summarising_launch.summarises = True  # type: ignore[attr-defined]
    plugin.launch = summarising_launch  # type: ignore[method-assign]


def wait_for_jobs(jobs: list[Path], poll_s: float = 5) -> dict[str, str]:
    """Wait until each of `jobs` (submitit's job folders) has its result or has ended; the
    SLURM state of each, by job id."""
    watcher = SlurmJob.watcher
    while True:
        states = {job.name: watcher.get_state(job.name, mode="force") for job in jobs}
        ended = [any(job.glob("*_result.pkl")) or watcher.is_done(job.name) for job in jobs]
        if all(ended):
            return states
        time.sleep(poll_s)


class SlurmSweeps(Callback):
    """Hydra callback (conf/config.yaml): a sweep through hydra/launcher=slurm follows its jobs
    with `follow_slurm_jobs`."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher"):
            follow_slurm_jobs()
