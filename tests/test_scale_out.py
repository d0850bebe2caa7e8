"""Scaling out: Optuna search through Hydra's sweeper, sweeps through submitit (local processes
here, SLURM jobs on a cluster), and the SLURM launcher config."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, compose_config

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
def test_optuna_search_runs_trials_and_writes_the_best(tmp_path):
    result = run_train(
        "-m",
        "hparams_search=cnn_digits",
        "hydra.sweeper.n_trials=3",
        "trainer.max_epochs=1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Directions: ['maximize']" in result.stdout + result.stderr
    (results,) = (tmp_path / "logs").rglob("optimization_results.yaml")
    best = yaml.safe_load(results.read_text())
    assert set(best["best_params"]) == {
        "optimizer.lr", "data.batch_size", "model.dropout", "model.channels"
    }  # fmt: skip
    assert 1e-4 <= best["best_params"]["optimizer.lr"] <= 0.03
    trials = sorted(p for p in results.parent.iterdir() if p.is_dir())
    assert len(trials) == 3 and result.stdout.count("test/acc") == 3
    assert 0.1 < best["best_value"] <= 1  # a validation accuracy, the best of the three
    assert f"Best value: {best['best_value']}" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_sweep_runs_as_two_submitit_jobs(tmp_path):
    result = run_train(
        "-m",
        "hydra/launcher=submitit_local",
        "model=mlp,cnn",
        "trainer.max_epochs=1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "multirun").iterdir()
    jobs = list((sweep / ".submitit").glob("*/*_result.pkl"))
    assert len(jobs) == 2  # each sweep point ran as its own submitit job (a local process)
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name[0] != ".")
    assert len(runs) == 2 and "mlp-digits" in runs[0] and "cnn-digits" in runs[1]
    for run in runs:
        assert list((sweep / run / "checkpoints").glob("best*.ckpt"))
