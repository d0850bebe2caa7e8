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
from zoo.search import direction, objective

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
    assert math.isnan(objective(config, {}))  # a skipped pair: a failed trial, not a score
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
    nodes = [
        subprocess.Popen(
            [*torchrun, f"--node_rank={rank}", *rendezvous, str(REPO / "train.py"), *overrides],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        )
        for rank in (0, 1)
    ]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=300)[0])
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert "MEMBER: 1/2" in outputs[0] and "MEMBER: 2/2" in outputs[1]
    assert outputs[0].count("test/acc") == 1 and "test/acc" not in outputs[1]  # rank 0 reports
    # Each node trained on its half of every epoch: half the steps of a one-process run.
    data = DigitsDataModule()
    data.setup()
    steps = math.ceil(len(data.splits["train"][0]) // 2 / data.batch_size)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == steps
