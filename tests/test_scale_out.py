"""Scaling out: Optuna search through Hydra's sweeper, sweeps through submitit (local processes
here, SLURM jobs on a cluster), and the SLURM launcher config."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, compose_config

from zoo.data import DigitsDataModule
from zoo.run.cluster import SqueueWhenNoAccounting
from zoo.run.folders import sweep_summary
from zoo.run.search import direction, objective

QUIET = ["~callbacks.progress_bar", "+trainer.enable_progress_bar=false"]


def run_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args, *QUIET, f"paths.log_dir={cwd / 'logs'}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},  # job processes import this checkout's zoo
    )


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("val/acc", "maximize"),
        ("val/nmi", "maximize"),
        ("val/loss", "minimize"),
        ("val/fid", "minimize"),
        ("val/bpc", "minimize"),
        ("val/mse", "minimize"),
    ],
)
def test_the_search_direction_follows_from_the_metric(metric, expected):
    assert direction(metric) == expected


def test_a_trial_returns_the_optimized_metric(tmp_path):
    config = compose_config(tmp_path, ["hparams_search=cnn_digits"])
    assert config.optimized_metric == "val/acc"
    assert objective(config, {"val/acc": 0.75, "val/loss": 0.5}) == 0.75
    assert objective(config, {}) is None  # a skipped pair: a failed trial, not a score
    assert objective(compose_config(tmp_path), {"val/acc": 0.75}) is None  # no search


@pytest.mark.slow
def test_optuna_search_runs_its_trials_as_submitit_jobs_and_writes_the_best(tmp_path):
    # One run covers both: the sweeper asks for two trials at once (n_jobs=2), and submitit
    # runs them as two jobs (local processes here, SLURM jobs with hydra/launcher=slurm).
    result = run_train(
        "-m",
        "hparams_search=cnn_digits",
        "hydra/launcher=submitit_local",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "trainer.max_epochs=1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Directions: ['maximize']" in output
    (sweep,) = (tmp_path / "logs" / "multirun").iterdir()
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # two submitit jobs
    trials = [p for p in sweep.iterdir() if p.is_dir() and p.name[0] != "."]
    assert len(trials) == 2
    for trial in trials:
        assert "cnn-digits" in trial.name and list((trial / "checkpoints").glob("best*.ckpt"))
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {
        "optimizer.lr", "data.batch_size", "model.dropout", "model.channels"
    }  # fmt: skip
    assert 1e-4 <= best["best_params"]["optimizer.lr"] <= 0.03
    assert 0.1 < best["best_value"] <= 1  # a validation accuracy, the better of the two
    assert f"Best value: {best['best_value']}" in output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_one_model_with_ddp(tmp_path):
    """Two torchrun agents on this machine act as two nodes of one process each (gloo, CPU):
    the multi-node code path (trainer.num_nodes=2) as on a cluster."""
    port, run_dir = free_port(), tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1"]
    rendezvous = ["--master_addr=127.0.0.1", f"--master_port={port}"]
    overrides = [
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2",
        "trainer.precision=32-true", "trainer.benchmark=false", "trainer.max_epochs=1",
        "model=mlp", f"hydra.run.dir={run_dir}", *QUIET,
    ]  # fmt: skip
    # Each node writes to a file: a pipe read one node after the other could fill up and stall
    # the other node mid-training, and with it the first one at its next collective.
    logs = [tmp_path / f"node{rank}.log" for rank in (0, 1)]
    nodes = []
    for rank, log in enumerate(logs):
        with open(log, "w") as output:
            nodes.append(
                subprocess.Popen(
                    [*torchrun, f"--node_rank={rank}", *rendezvous, str(REPO / "train.py"),
                     *overrides],
                    cwd=tmp_path,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    # TMPDIR: torchrun's agent keeps its logs in a temporary folder it leaves
                    env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                         "TMPDIR": str(tmp_path)},
                )
            )  # fmt: skip
    try:
        for node in nodes:
            node.wait(timeout=300)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for node in nodes:
            if node.poll() is None:  # a hang: stop both, and show what each node printed
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    outputs = [log.read_text() for log in logs]
    tails = f"node 0:\n{outputs[0][-3000:]}\nnode 1:\n{outputs[1][-3000:]}"
    assert [node.returncode for node in nodes] == [0, 0], tails
    assert "MEMBER: 1/2" in outputs[0] and "MEMBER: 2/2" in outputs[1]
    assert outputs[0].count("test/acc") == 1 and "test/acc" not in outputs[1]  # rank 0 reports
    # Each node trained on its half of every epoch: half the steps of a one-process run.
    data = DigitsDataModule()
    data.setup()
    steps = math.ceil(len(data.splits["train"][0]) // 2 / data.batch_size)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == steps


def test_the_slurm_launcher_config_writes_the_batch_script_a_cluster_needs(tmp_path, monkeypatch):
    """hydra/launcher=slurm through the plugin's own launch, up to the sbatch script it would
    submit (captured here instead of submitted)."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from zoo.registry import CONFIG_DIR

    overrides = ["hydra/launcher=slurm", "trainer.num_nodes=2", "hydra.launcher.gpus_per_node=4"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        config = compose("config", overrides, return_hydra_config=True)
    config.hydra.sweep.dir = str(tmp_path / "sweep")
    scripts = []

    def capture(executor, *args):
        scripts.append(executor._executor._make_submission_file_text("python train.py", "0"))
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    (tmp_path / "srun").write_text("#!/bin/sh\n")  # submitit checks that it is on a cluster
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    launcher = instantiate(config.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=config)
    launcher.launch([["model=mlp"], ["model=cnn"]], initial_job_idx=0)
    (script,) = scripts
    for line in ["nodes=2", "gpus-per-node=4", "ntasks-per-node=4", "partition=gpu", "mem=32GB"]:
        assert f"#SBATCH --{line}\n" in script
    assert "#SBATCH --signal=USR1@120\n" in script  # the signal Lightning's requeue listens to
    assert script.count("--signal") == 1


@pytest.mark.slow
def test_slurm_preemption_saves_requeues_and_the_requeued_job_resumes(tmp_path):
    """Lightning's SLURMEnvironment (auto_requeue) as SLURM drives it: SIGUSR1 before the end;
    `scontrol` (a stand-in that records the call and then kills the job, as SLURM would)."""
    bin_dir, run_dir, calls = tmp_path / "bin", tmp_path / "run", tmp_path / "scontrol_calls"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nkill -9 $PPID\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "zoo", "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0", "SLURM_NODELIST": "127.0.0.1",
    }  # fmt: skip
    env = {**os.environ, **slurm, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    command = [
        sys.executable, str(REPO / "train.py"), "model=mlp", "trainer.max_epochs=2",
        "trainer.accelerator=cpu", f"hydra.run.dir={run_dir}", *QUIET,
        "+callbacks.preempt._target_=preemption.SignalAtStep", "+callbacks.preempt.step=5",
    ]  # fmt: skip
    env["PYTHONPATH"] = f"{REPO}:{REPO / 'tests'}"
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert calls.read_text().split() == ["requeue", "4242"]
    (hpc,) = run_dir.glob("hpc_ckpt_*.ckpt")
    assert torch.load(hpc, weights_only=True)["global_step"] == 5
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"Restored all states from the checkpoint at {hpc}" in second.stdout + second.stderr
    steps_per_epoch = math.ceil(len(train_split()) / 64)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2 * steps_per_epoch and last["epoch"] == 1


def train_split() -> torch.Tensor:
    data = DigitsDataModule()
    data.setup()
    return data.splits["train"][0]


def test_a_sweep_summary_counts_jobs_not_submitits_folder_and_names_unfinished_ones(tmp_path):
    sweep = tmp_path / "sweep"
    for point in ("0_mlp-digits", "1_cnn-digits"):
        (sweep / point).mkdir(parents=True)
    (sweep / ".submitit" / "5").mkdir(parents=True)  # a job array's script: not a job
    (sweep / ".submitit" / "5" / "5_submission.sh").write_text("#!/bin/sh\n")
    for job in ("5_0", "5_1"):
        (sweep / ".submitit" / job).mkdir()
        (sweep / ".submitit" / job / f"{job}_submitted.pkl").write_bytes(b"")
    (sweep / ".submitit" / "5_0" / "5_0_0_result.pkl").write_bytes(b"")  # 5_1 was cancelled
    summary, failed = sweep_summary(sweep, {"5_1": "CANCELLED"})
    assert summary.splitlines() == [
        f"sweep {sweep}: 2 points, 1 ran, 0 not applicable, 1 failed",
        f"  did not finish: job 5_1 CANCELLED (its log: {sweep / '.submitit' / '5_1'})",
    ]
    assert failed == 1
    (sweep / ".submitit" / "5_1" / "5_1_0_result.pkl").write_bytes(b"")
    assert sweep_summary(sweep)[0] == f"sweep {sweep}: 2 points, 2 ran, 0 not applicable, 0 failed"


def test_without_accounting_jobs_are_followed_through_squeue_said_once(
    tmp_path, monkeypatch, caplog
):
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    sacct = bin_dir / "sacct"
    sacct.write_text("#!/bin/sh\necho Slurm accounting storage is disabled >&2\nexit 1")
    (bin_dir / "squeue").write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\necho "7_0|CANCELLED|vm"\necho "7_1|RUNNING|vm"\n'
    )
    for tool in ("sacct", "squeue"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    watcher = SqueueWhenNoAccounting(delay_s=60)
    states = [watcher.get_state(job, mode="force") for job in ("7_0", "7_1", "7_0", "6")]
    assert states == ["CANCELLED", "RUNNING", "CANCELLED", "PURGED"]  # 6: squeue forgot it
    assert watcher.is_done("7_0", mode="cache") and not watcher.is_done("7_1", mode="cache")
    assert watcher.is_done("6", mode="cache")
    said = [r.getMessage() for r in caplog.records if "accounting" in r.getMessage()]
    off = "SLURM accounting is off (sacct: Slurm accounting storage is disabled)"
    assert said == [f"{off}: job states come from squeue"]
    assert "--jobs 6,7" in calls.read_text()
