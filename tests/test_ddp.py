"""Every model yaml under 2-process DDP on the CPU (gloo): a few batches each, in one group."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ddp_group import CLOCK, POISONED, RESUMED

from zoo.registry import list_models

GROUP = Path(__file__).resolve().parent / "ddp_group.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_group(out: Path, models: list[str], timeout: float = 600) -> list[str]:
    """Both processes of one DDP group training `models` in turn; their stderr, by rank."""
    port = str(free_port())
    processes = []
    for rank in range(2):
        env = os.environ | {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "NODE_RANK": "0",
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "OMP_NUM_THREADS": "1",
        }
        command = [sys.executable, str(GROUP), str(out), *models]
        processes.append(
            subprocess.Popen(
                command,
                cwd=out,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    errors = []
    try:
        for process in processes:
            errors.append(process.communicate(timeout=timeout)[1])
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    return errors


@pytest.mark.slow
def test_every_model_trains_under_two_process_cpu_ddp(tmp_path):
    """Each model yaml: a few batches, identical parameters in both processes afterwards, test
    metrics; then a NaN in one process stops both with the guard's line (no hang)."""
    models = list_models()
    errors = run_group(tmp_path, [*models, POISONED])
    stopped = [json.loads((tmp_path / f"{POISONED}.rank{r}.json").read_text()) for r in (0, 1)]
    assert "not finite in another process" in stopped[0]["stopped"], stopped
    assert "training loss became nan" in stopped[1]["stopped"], stopped
    for model in models:
        failed = [(tmp_path / f"{model}.rank{r}.error") for r in range(2)]
        assert not any(f.exists() for f in failed), next(
            f.read_text() for f in failed if f.exists()
        )
        results = [tmp_path / f"{model}.rank{r}.json" for r in range(2)]
        assert all(r.exists() for r in results), f"{model} did not finish: {errors[0][-3000:]}"
        metrics = json.loads(results[0].read_text())
        assert any(name.startswith("test/") for name in metrics), (model, metrics)
        written_once_by_rank_0(tmp_path / model, metrics["pid"])


def written_once_by_rank_0(folder: Path, rank_0_pid: int) -> None:
    """Event files by rank 0 only (events.out.tfevents.<time>.<host>.<pid>.<n>), one last.ckpt
    and best checkpoint, no partial files; the folder's lock was taken by rank 0. (No .hydra
    record: these runs are composed, not run through Hydra's command line.)"""
    names = sorted(p.name for p in folder.rglob("*") if p.is_file())
    events = [n for n in names if n.startswith("events.out.tfevents")]
    assert events and {n.split(".")[-2] for n in events} == {str(rank_0_pid)}, names
    assert names.count("last.ckpt") == 1 and len([n for n in names if "best-" in n]) == 1, names
    assert not [n for n in names if "partial" in n or "-v1" in n], names
    assert (folder / ".lock").read_text().strip() == str(rank_0_pid)


@pytest.mark.slow
def test_ddp_resumes_exactly_and_shares_the_checkpoint_clock(tmp_path):
    """Two processes: a run killed after batch 9 and resumed ends with the uninterrupted run's
    metrics and weights in both (mlp: dropout and augmentation, in memory and through a torch
    DataLoader; gan: each process's own noise); last.ckpt every 1e-9 s of training is written
    mid-epoch, at the same steps in both processes (rank 0's clock, no hang)."""
    resumed = [f"{RESUMED}mlp", f"{RESUMED}mlp-dataloader", f"{RESUMED}gan"]
    errors = run_group(tmp_path, [*resumed, CLOCK], timeout=500)
    for name in (*resumed, CLOCK):
        failed = [tmp_path / f"{name}.rank{r}.error" for r in range(2)]
        assert not any(f.exists() for f in failed), next(
            f.read_text() for f in failed if f.exists()
        )
        results = [tmp_path / f"{name}.rank{r}.json" for r in range(2)]
        assert all(r.exists() for r in results), errors[0][-3000:]
    for name in resumed:
        for rank in range(2):
            result = json.loads((tmp_path / f"{name}.rank{rank}.json").read_text())
            assert result["resumed"] == result["twin"] and not result["weights_differ"], result
    saves = json.loads((tmp_path / CLOCK / "saves.json").read_text())
    assert 40 in saves and saves[-1] == 60, saves  # the clock's write mid-epoch, the epoch end
