"""compare.py: table and plot from real runs' event files; crashed runs are skipped."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, compose_config
from torch.utils.tensorboard import SummaryWriter

import zoo
from zoo.cli.compare import find_runs, load_run
from zoo.registry import models_for
from zoo.run.hparams import hparams_summaries
from zoo.run.training import train


@pytest.mark.slow
def test_compare_tables_finished_runs_plots_them_and_skips_crashed(tmp_path):
    for model in ("mlp", "cnn"):
        train(
            compose_config(
                tmp_path / "logs" / f"{model}-digits", [f"model={model}", "trainer.max_epochs=2"]
            )
        )
    with SummaryWriter(tmp_path / "logs" / "crashed") as writer:
        writer.add_scalar("val/loss", 1.0, 0)
    plot = tmp_path / "curves.png"
    result = subprocess.run(
        [sys.executable, str(REPO / "compare.py"), str(tmp_path / "logs"), f"plot={plot}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("skipped") and "crashed" in line for line in lines)
    assert any(line.startswith("val/acc (Supervised): 2 runs, best first") for line in lines)
    rows = {line.split()[1]: line.split() for line in lines if "-digits" in line}
    assert set(rows) == {"mlp", "cnn"}
    for cells in rows.values():
        assert cells[2] == "digits" and cells[3].replace(",", "").isdigit()  # parameters
        assert 0 < float(cells[4]) <= 1 and 0 < float(cells[5]) <= 1 and cells[6] == "2"  # epochs
        assert float(cells[7]) > 0 and float(cells[8].replace(",", "")) > 0  # seconds, samples/s
    best = [float(rows[model][4]) for model in rows]
    assert best == sorted(best, reverse=True)  # best first
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_compare_sweep_runs_the_pairs_that_fit_and_lists_the_others_as_not_applicable(tmp_path):
    """experiment=compare on sequences: image-only models are skipped with their reason."""
    logs = tmp_path / "logs"
    sweep = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            "experiment=compare",
            "data=adding",
            "data.seq_len=6",
            "data.num_samples=120",
            "trainer.max_epochs=1",
            f"paths.log_dir={logs}",
            "~callbacks.progress_bar",
            "+trainer.enable_progress_bar=false",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    image_only = set(zoo.list_models()) - set(models_for("sequence"))
    assert {"cnn", "gan", "dcgan"} <= image_only
    for name in image_only:
        assert f"not applicable, skipped: model={name} " in sweep.stdout
    assert sweep.stdout.count("test/mse") == len(zoo.list_models()) - len(image_only)
    result = subprocess.run(
        [sys.executable, str(REPO / "compare.py"), str(logs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    listed = [line for line in result.stdout.splitlines() if line.startswith("not applicable")]
    assert len(listed) == len(image_only) and all(
        "this data gives sequences" in line for line in listed
    )


def test_load_run_reads_scalar_series_and_the_hparams_row_with_their_types(tmp_path):
    table = {"model": "cnn", "lr": 0.001, "data.batch_size": 64, "model.compile": False}
    with SummaryWriter(tmp_path / "run") as writer:
        for step, loss in enumerate((0.9, 0.5)):
            writer.add_scalar("val/loss", loss, step)
        writer.add_scalar("run/fit_seconds", 2.5, 1)
        for summary in hparams_summaries(table, ["val/loss"]):
            writer.file_writer.add_summary(summary)
    with SummaryWriter(tmp_path / "plain") as writer:
        writer.add_scalar("val/loss", 1.0, 0)
    run = load_run(tmp_path / "run")
    assert run.scalars["val/loss"] == [(0, pytest.approx(0.9)), (1, pytest.approx(0.5))]
    assert run.last("run/fit_seconds") == 2.5
    assert run.hparams == table  # (torch writes a bool as the number 0 or 1)
    assert run.cells(tmp_path)["lr"] == "0.001"
    assert load_run(tmp_path / "plain").hparams == {}  # no HPARAMS row: no columns, no error
    finished, skipped = find_runs([tmp_path])
    assert [r.folder.name for r in finished] == ["run"] and skipped[0][0].name == "plain"
