"""What a person sees: run names, the HPARAMS row, compare.py's tables, classifier pictures,
train.py --help."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO, hparams_row, hparams_tab
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from zoo.cli.compare import Run, table
from zoo.run.folders import project_root, readable_overrides, run_name

QUIET = ["~callbacks.progress_bar", "+trainer.enable_progress_bar=false"]
SHORT = ["trainer.max_epochs=1", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2"]


def test_a_run_is_named_by_what_it_changed_not_by_where_it_writes():
    overrides = [
        "model=cnn",
        "data=digits",
        "optimizer=sgd",
        "paths.log_dir=/tmp/x",
        "hydra.run.dir=/tmp/y",
        "+trainer.limit_train_batches=2",
        "data.path=/a/b.csv",
        "~callbacks.progress_bar",
    ]
    assert readable_overrides(overrides) == (
        "data.path=-a-b.csv,optimizer=sgd,trainer.limit_train_batches=2"
    )
    assert readable_overrides(["model=cnn", "paths.log_dir=x"]) == ""
    assert run_name("", "2026-01-01_00-00-00_abc123") == "2026-01-01_00-00-00_abc123"  # no `_`
    assert run_name("0_cnn-digits") == "0_cnn-digits"
    assert len(readable_overrides([f"model.option{i}=1" for i in range(50)])) <= 120


def train_cli(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *overrides, *QUIET],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_runs_are_named_logged_by_yaml_name_and_compared_by_task(tmp_path):
    logs = tmp_path / "logs"
    sweep = train_cli("-m", "model=mlp,lstm", "optimizer=sgd", *SHORT, f"paths.log_dir={logs}")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "lstm (RecurrentNet) on digits" in sweep.stdout
    points = sorted(p.name for p in next((logs / "multirun").iterdir()).iterdir() if p.is_dir())
    changed = "optimizer=sgd,trainer.limit_train_batches=3,trainer.limit_val_batches=2,"
    assert points == [
        f"0_mlp-digits_{changed}trainer.max_epochs=1",
        f"1_lstm-digits_{changed}trainer.max_epochs=1",
    ]
    single = train_cli("model=mlp", "data=diabetes", *SHORT, f"paths.log_dir={logs}")
    assert single.returncode == 0, single.stderr[-3000:]
    (run,) = (logs / "mlp-diabetes").iterdir()
    assert re.fullmatch(
        r"trainer\.limit_train_batches=3,trainer\.limit_val_batches=2,trainer\.max_epochs=1"
        r"_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}",
        run.name,
    )

    lstm = next((logs / "multirun").glob("*/1_lstm-digits_*"))
    events = EventAccumulator(str(lstm), size_guidance={"images": 0})
    events.Reload()
    row = hparams_row(events)
    assert row["model"].string_value == "lstm" and row["net"].string_value == "RecurrentNet"
    assert row["model.cell"].string_value == "lstm" and row["lr"].number_value > 0
    assert {"test/confusion_matrix", "test/worst_classified"} <= set(events.Tags()["images"])
    assert events.Tags()["graph"]  # the network's graph
    single_events = EventAccumulator(str(run))
    single_events.Reload()
    layouts = [
        {info.name.tag for info in hparams_tab(e)["_hparams_/experiment"].experiment.metric_infos}
        for e in (events, single_events)
    ]
    assert layouts[0] == layouts[1] >= {"val/acc", "test/mse", "test/r2", "val/fid"}

    result = subprocess.run(
        [sys.executable, str(REPO / "compare.py"), str(logs), "width=120"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    heads = [line for line in lines if ", best first" in line]
    assert len(heads) == 2  # classification by val/acc, regression by val/mse: apart
    assert heads[0].startswith("val/acc (Supervised): 2 runs")
    assert heads[1].startswith("val/mse (Supervised): 1 run,")
    assert all(len(line) <= 120 for line in lines if not line.startswith(("plot:", "val/")))
    picked = subprocess.run(
        [sys.executable, str(REPO / "compare.py"), str(logs), "columns=run,lr,best"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert picked.stdout.splitlines()[1].startswith("all with: optimizer=sgd,trainer.limit_")
    assert picked.stdout.splitlines()[2].split() == ["run", "lr", "best"]
    assert picked.stdout.splitlines()[4].split()[0].endswith("/0_mlp-digits")  # shared: said once
    assert (logs / "compare.png").read_bytes().startswith(b"\x89PNG")


def test_table_fits_the_width_and_sorts_best_first(tmp_path):
    runs = [
        Run(tmp_path / f"cnn-digits/optimizer.lr={lr},trainer.max_epochs=20_abc{i}", "cnn", "d")
        for i, lr in enumerate((0.1, 0.01, 0.001))
    ]
    for run, acc in zip(runs, (0.5, 0.9, 0.7)):
        run.scalars = {"val/acc": [(0, acc)], "test/acc": [(0, acc)], "run/fit_seconds": [(0, 1)]}
    text = table(sorted(runs, key=lambda r: -r.best()), tmp_path, width=90)
    lines = text.splitlines()
    assert all(len(line) <= 90 for line in lines)
    assert [line.split()[-4] for line in lines[2:]] == ["0.9000", "0.7000", "0.5000"]
    assert "..." in lines[2]  # the run's name gave way, middle first


def test_help_shows_the_zoos_examples_and_its_models():
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert "python train.py model=lstm data=adding" in result.stdout
    assert "model: ae, cnn, dcgan" in result.stdout and "optimizer: adagrad" in result.stdout


def test_logs_and_data_go_to_the_checkout_whatever_the_working_directory():
    assert project_root() == str(REPO)
