"""Run folders and records through train.py as a user runs it: runs started together never
share a folder, a refused command changes nothing, a sweep survives a bad point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, compose_config

from zoo.run.folders import sweep_summary
from zoo.run.naming import hydra_value
from zoo.run.training import build_run, cpu_threads

QUIET = ["~callbacks.progress_bar", "+trainer.enable_progress_bar=false"]
ONE_EPOCH = ["model=mlp", "trainer.max_epochs=1", *QUIET]


def train_py(*args: str, log_dir: Path) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), *args, f"paths.log_dir={log_dir}"]


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
def test_runs_and_sweeps_started_together_never_share_a_folder(tmp_path):
    logs = tmp_path / "logs"
    run = train_py(*ONE_EPOCH, log_dir=logs)
    sweep = train_py("-m", *ONE_EPOCH, "optimizer.lr=-1", log_dir=logs)  # a point that is quick
    processes = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in [run, run, sweep, sweep]
    ]
    results = [finish(p) for p in processes]
    assert [r.returncode for r in results] == [0, 0, 2, 2], [r.stderr[-1000:] for r in results]
    runs = sorted((logs / "mlp-digits").iterdir())
    sweeps = sorted((logs / "multirun").iterdir())
    assert len(runs) == 2 and len(sweeps) == 2
    for folder in runs:
        assert len(list(folder.glob("events.out.tfevents.*"))) >= 1
        assert (folder / ".hydra" / "config.yaml").is_file()
        assert (folder / "checkpoints" / "last.ckpt").is_file()
    for folder in sweeps:
        assert len(list(folder.glob("0_*/failed.txt"))) == 1


@pytest.mark.slow
def test_a_refused_command_changes_no_earlier_record_and_leaves_no_folder(tmp_path):
    logs = tmp_path / "logs"
    first = subprocess.run(
        train_py(*ONE_EPOCH, "data.batch_size=16", log_dir=logs), capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr[-2000:]
    (run,) = (logs / "mlp-digits").iterdir()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    old = hydra_value(str(run))  # its name holds `=` and `,` (data.batch_size=16,...)
    refused = [
        [*ONE_EPOCH, "optimizer.lr=-1"],  # a bad value, into a fresh folder
        [*ONE_EPOCH, "optimizer.lr=-1", f"hydra.run.dir={old}"],  # the same, into the old run
        [*ONE_EPOCH, "trainer.max_epochs=2", "ckpt_path=last", f"hydra.run.dir={old}"],  # no bs
    ]
    for args in refused:
        result = subprocess.run(train_py(*args, log_dir=logs), capture_output=True, text=True)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        if "ckpt_path=last" in args:
            assert "data.batch_size=16" in line.split("resume with:")[1]
    assert list((logs / "mlp-digits").iterdir()) == [run]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_a_sweep_runs_every_point_and_lists_the_refused_ones(tmp_path):
    logs = tmp_path / "logs"
    result = subprocess.run(
        train_py(
            "-m",
            "model=mlp,cnn",
            "data=adding",
            "optimizer.lr=-1,0.01",
            *ONE_EPOCH[1:],
            log_dir=logs,
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (sweep,) = (logs / "multirun").iterdir()
    assert "4 points, 1 ran, 1 not applicable, 2 failed" in result.stdout
    assert result.stdout.count("optimizer.lr must be > 0") >= 2  # both failed points, with why
    (ran,) = [p for p in sweep.iterdir() if (p / "checkpoints" / "last.ckpt").is_file()]
    assert ran.name.startswith(tuple("0123")) and "mlp" in ran.name and "lr=0.01" in ran.name
    assert sweep_summary(sweep)[1] == 2
    listed = subprocess.run(
        [sys.executable, str(REPO / "compare.py"), str(sweep)], capture_output=True, text=True
    )
    assert listed.stdout.count("failed ") == 2 and listed.stdout.count("not applicable ") == 1


def test_cpu_threads_default_leaves_cores_free_and_a_run_uses_it(tmp_path):
    class Trainer:
        num_devices = 2

    assert cpu_threads(3, Trainer()) == 3
    assert 1 <= cpu_threads("auto", Trainer()) <= 4
    build_run(compose_config(tmp_path, ["model=mlp"]))
    assert torch.get_num_threads() == cpu_threads("auto", type("T", (), {"num_devices": 1})())
