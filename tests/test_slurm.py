"""Sweeps on a real one-node SLURM cluster (scripts/slurm_cluster.sh; .ci/run starts it): the
README's cluster commands, preemption and time limits that requeue and resume, a failing point,
and `scancel` of a whole sweep. Skipped, saying why, where SLURM is not installed."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from zoo.data import DigitsDataModule

pytestmark = pytest.mark.slurm

# The README's cluster command, sized for this one-node cluster: its `debug` partition, no GPU,
# one task of one core and 1 GB per job, one torch thread.
SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "threads=1",
    "trainer.accelerator=cpu",
]
QUIET = ["~callbacks.progress_bar", "+trainer.enable_progress_bar=false"]
ACCOUNTING_OFF = "SLURM accounting is off"


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    """The one-node cluster: .ci/run starts it; where it is not up, the repo's script starts it
    (idempotent) and leaves it running (scripts/slurm_cluster.sh stop ends it)."""
    if shutil.which("sbatch") is None:
        pytest.skip("SLURM is not installed here (apt-get install -y slurm-wlm munge)")
    script = REPO / "scripts" / "slurm_cluster.sh"
    up = subprocess.run([script, "start"], capture_output=True, text=True)
    if up.returncode != 0:
        pytest.skip(f"no SLURM cluster: {up.stderr.strip()}")


def sweep(tmp_path: Path, *overrides: str) -> subprocess.Popen:
    """`python train.py -m` on the cluster, started in the background."""
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), "-m", *SLURM, *QUIET, *overrides,
         f"paths.log_dir={tmp_path / 'logs'}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"},  # jobs import the same
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def sweep_folder(tmp_path: Path) -> Path:
    (folder,) = (tmp_path / "logs" / "multirun").iterdir()
    return folder


def points(tmp_path: Path) -> list[Path]:
    return sorted(p for p in sweep_folder(tmp_path).iterdir() if p.is_dir() and p.name[0] != ".")


def wait_for(flags: Path, count: int, process: subprocess.Popen, timeout: float = 180) -> list:
    """The ids of the first `count` jobs that reached their waiting step."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and process.poll() is None:
        if flags.is_dir() and len(jobs := sorted(flags.iterdir())) >= count:
            return jobs
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"no {count} jobs reached their step: {process.communicate()[0][-3000:]}")


def waiting_at(step: int, flags: Path) -> list[str]:
    return [
        "+callbacks.wait._target_=preemption.WaitForSignalAtStep",
        f"+callbacks.wait.step={step}",
        f"+callbacks.wait.flags={flags}",
    ]


def job_log(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in sweep_folder(tmp_path).glob(".submitit/*/*_log.*"))


def scalars(folder: Path) -> dict[str, float]:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}


def test_a_sweep_runs_one_slurm_job_per_point(tmp_path):
    output = finish(sweep(tmp_path, "trainer.max_epochs=1", "model=mlp,cnn"))
    assert f"sweep {sweep_folder(tmp_path)}: 2 points, 2 ran, 0 not applicable, 0 failed" in output
    scripts = list(sweep_folder(tmp_path).glob(".submitit/*/*_submission.sh"))
    assert scripts and all("#SBATCH --partition=debug\n" in s.read_text() for s in scripts)
    assert [p.name.split("_")[1] for p in points(tmp_path)] == ["mlp-digits", "cnn-digits"]
    for point in points(tmp_path):
        assert "test/acc" in scalars(point) and list(point.glob("checkpoints/best*.ckpt"))
    # No accounting here (no slurmdbd): one line says so, not submitit's warning every poll.
    assert output.count(ACCOUNTING_OFF) == 1 and "Bypassing sacct" not in output


def test_one_failing_point_among_good_ones_is_named_and_the_sweep_exits_2(tmp_path):
    process = sweep(tmp_path, "trainer.max_epochs=1", "model=mlp", "optimizer.lr=0.001,-1")
    output = finish(process)
    assert process.returncode == 2, output[-3000:]
    assert ": 2 points, 1 ran, 0 not applicable, 1 failed" in output
    (failed,) = [line for line in output.splitlines() if line.startswith("  failed: ")]
    assert failed.startswith("  failed: 1_mlp-digits_optimizer.lr=-1,")
    assert failed.endswith(": optimizer.lr must be > 0 and finite, got -1")


def test_a_preempted_job_requeues_resumes_in_its_folder_and_matches_its_twin(tmp_path):
    flags, twin_dir = tmp_path / "flags", tmp_path / "twin"
    same = ["model=mlp", "trainer.max_epochs=2", "trainer.deterministic=true", "seed=3"]
    process = sweep(tmp_path, *same, *waiting_at(5, flags))
    (job,) = wait_for(flags, 1, process)
    subprocess.run(["scancel", "--signal=USR1", job.name], check=True)  # what USR1@N sends
    twin = subprocess.run(  # the same run, left alone, meanwhile
        [sys.executable, str(REPO / "train.py"), *same, "threads=1", "trainer.accelerator=cpu",
         *QUIET, f"hydra.run.dir={twin_dir}"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert twin.returncode == 0, twin.stderr[-3000:]
    output = finish(process)
    assert process.returncode == 0 and ": 1 points, 1 ran, 0 not applicable, 0 failed" in output
    (point,) = points(tmp_path)
    (hpc,) = point.glob("hpc_ckpt_*.ckpt")  # saved by Lightning on SIGUSR1, then requeued
    saved = torch.load(hpc, weights_only=True)
    assert saved["global_step"] == 5
    log = job_log(tmp_path)
    assert f"Requeued SLURM job: {job.name}" in log
    assert f"Restored all states from the checkpoint at {hpc}" in log
    last = torch.load(point / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = math.ceil(len(train_split()) / 64)
    assert last["global_step"] == 2 * steps_per_epoch and last["epoch"] == 1
    # Its fit time is that of both attempts: the first one's is in the hpc checkpoint.
    before = saved["callbacks"]["RunStats"]["time_elapsed"]["train"]
    assert scalars(point)["run/fit_seconds"] > before > 0
    compare = subprocess.run(
        [sys.executable, str(REPO / "compare.py"), str(tmp_path / "logs"), "width=200",
         f"plot={tmp_path / 'compare.png'}"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    rows = [line for line in compare.stdout.splitlines() if " mlp " in line]
    assert len(rows) == 1, compare.stdout  # one run, however many attempts
    assert f"{scalars(point)['run/fit_seconds']:.1f}" in rows[0].split()
    resumed, alone = scalars(point), scalars(twin_dir)
    # Exact resume: the hpc checkpoint holds the loader's position and every random state.
    assert (resumed["test/acc"], resumed["test/loss"]) == (alone["test/acc"], alone["test/loss"])


def test_a_job_at_its_time_limit_is_signalled_requeued_and_finishes(tmp_path):
    # A two-minute limit and the signal 30 s before it: SLURM, which checks limits every 30 s,
    # sends USR1 30 to 60 s before the limit, by itself, while the job waits at step 5. The
    # requeued attempt has two minutes again, and needs well under one.
    flags = tmp_path / "flags"
    limit = ["hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=30"]
    process = sweep(tmp_path, "model=mlp", "trainer.max_epochs=1", *limit, *waiting_at(5, flags))
    (job,) = wait_for(flags, 1, process)
    output = finish(process)
    assert process.returncode == 0 and ": 1 points, 1 ran, 0 not applicable, 0 failed" in output
    (point,) = points(tmp_path)
    (hpc,) = point.glob("hpc_ckpt_*.ckpt")
    assert torch.load(hpc, weights_only=True)["global_step"] == 5
    log = job_log(tmp_path)
    assert "Handling auto-requeue signal: 10" in log and f"Requeued SLURM job: {job.name}" in log
    assert f"Restored all states from the checkpoint at {hpc}" in log
    assert "test/acc" in scalars(point)


def test_scancel_of_a_whole_sweep_ends_it_and_names_the_jobs(tmp_path):
    flags = tmp_path / "flags"
    process = sweep(tmp_path, "trainer.max_epochs=1", "model=mlp,cnn", *waiting_at(3, flags))
    jobs = wait_for(flags, 2, process)
    (array,) = {job.read_text().strip() for job in jobs}  # the sweep is one job array
    subprocess.run(["scancel", array], check=True)
    output = finish(process, timeout=150)  # without accounting submitit would wait forever
    assert process.returncode == 2, output[-3000:]
    assert ": 2 points, 0 ran, 0 not applicable, 2 failed" in output
    for job in jobs:
        assert f"  did not finish: job {array}_" in output
    assert output.count(" CANCELLED (its log: ") == 2 and "Traceback" not in output
    queue = subprocess.run(["squeue", "-h", "-j", array], capture_output=True, text=True)
    assert queue.stdout.strip() == ""


def train_split() -> torch.Tensor:
    data = DigitsDataModule()
    data.setup()
    return data.splits["train"][0]
