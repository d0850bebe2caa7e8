"""Tables: scikit-learn's embedded sets, CSV files, the single neuron and regression metrics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, compose_config
from sklearn import datasets

import zoo
from zoo.data import CSVDataModule, SklearnTable
from zoo.data.base import split_indices
from zoo.errors import ConfigError
from zoo.registry import models_for
from zoo.run.training import build, build_run, train

TABLES = {  # name: (rows, features, kind, outputs)
    "iris": (150, 4, "classification", 3),
    "wine": (178, 13, "classification", 3),
    "breast_cancer": (569, 30, "classification", 2),
    "diabetes": (442, 10, "regression", 1),
}


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join(",".join(map(str, row)) for row in [header, *rows]) + "\n")
    return path


def celsius_table(path: Path, rows: int = 200) -> Path:
    """Celsius and Fahrenheit pairs, F = 1.8 C + 32 exactly."""
    celsius = np.random.default_rng(0).uniform(-40, 100, rows).round(2)
    return write_csv(path, ["celsius", "fahrenheit"], [[c, 1.8 * c + 32] for c in celsius])


@pytest.mark.parametrize("name", TABLES)
def test_each_table_loads_with_its_shape_and_kind(make_config, name):
    rows, features, kind, outputs = TABLES[name]
    datamodule = build(make_config(f"data={name}").data)
    datamodule.setup()
    spec = datamodule.spec
    assert (spec.input_shape, spec.inputs, spec.kind, spec.num_outputs) == (
        (features,),
        "vector",
        kind,
        outputs,
    )
    assert sum(len(pair[1]) for pair in datamodule.splits.values()) == rows
    targets = datamodule.splits["train"][1]
    assert targets.dtype == (torch.long if kind == "classification" else torch.float32)
    assert (spec.target_scale is not None) == (kind == "regression")


def test_standardisation_uses_the_training_split_only(make_config):
    datamodule = build(make_config("data=wine", "data.seed=3").data)
    datamodule.setup()
    raw = torch.as_tensor(datasets.load_wine().data, dtype=torch.float32)
    train = raw[split_indices(len(raw), 0.15, 0.2, 3)["train"]]
    torch.testing.assert_close(datamodule.feature_mean, train.mean(0))
    torch.testing.assert_close(datamodule.feature_std, train.std(0))
    assert not torch.allclose(datamodule.feature_mean, raw.mean(0))
    inputs = datamodule.splits["train"][0]
    torch.testing.assert_close(inputs.mean(0), torch.zeros(13), atol=1e-5, rtol=0)
    val = datamodule.splits["val"][0]
    assert not torch.allclose(val.mean(0), torch.zeros(13), atol=1e-2)  # not refitted on val


def test_splits_are_seeded():
    def val_rows(seed: int) -> list[float]:
        datamodule = SklearnTable("iris", seed=seed)
        datamodule.setup()
        return datamodule.splits["val"][0].sum(1).tolist()

    assert val_rows(0) == val_rows(0) and val_rows(0) != val_rows(1)


@pytest.mark.slow
def test_the_neuron_recovers_celsius_to_fahrenheit(make_config, tmp_path):
    """README's first network: weight 1.8 and bias 32 in the table's own units."""
    path = celsius_table(tmp_path / "temperatures.csv")
    config = make_config(
        "model=neuron",
        "data=csv",
        f"data.path={path}",
        "data.target=fahrenheit",
        "optimizer.lr=0.05",
        "trainer.max_epochs=15",
    )
    metrics = train(config)
    assert metrics["test/r2"] > 0.999 and metrics["test/mae"] < 0.5
    task = zoo.load(next((tmp_path / "checkpoints").glob("best-*.ckpt")))
    data = CSVDataModule(path=str(path), target="fahrenheit")  # the same split and statistics
    weight, bias = data.linear_map(task)
    assert weight.shape == (1, 1)
    assert weight.item() == pytest.approx(1.8, abs=0.01)
    assert bias.item() == pytest.approx(32.0, abs=0.1)
    boiling = (torch.tensor([[100.0]]) - data.feature_mean) / data.feature_std
    assert task(boiling).item() == pytest.approx(212.0, abs=0.5)  # predictions in Fahrenheit


@pytest.mark.slow
def test_a_hidden_layer_beats_the_neuron_on_a_non_linear_table(make_config, tmp_path):
    """Inside or outside a circle: no straight line separates the classes."""
    points, labels = datasets.make_circles(400, noise=0.05, factor=0.5, random_state=0)
    rows = [[*p.round(4), ["outside", "inside"][y]] for p, y in zip(points, labels)]
    path = write_csv(tmp_path / "circles.csv", ["x", "y", "where"], rows)
    scores = {}
    for model in ("neuron", "mlp"):
        overrides = [f"model={model}", "data=csv", f"data.path={path}", "data.target=where"]
        config = compose_config(tmp_path / model, [*overrides, "trainer.max_epochs=10"])
        scores[model] = train(config)["test/acc"]
    assert scores["mlp"] > 0.95 and scores["neuron"] < 0.75, scores


def test_regression_reports_mse_mae_r2_in_the_summary(make_config, capsys):
    metrics = train(make_config("model=neuron", "data=diabetes", "trainer.max_epochs=2"))
    assert {"test/mse", "test/mae", "test/r2", "val/r2"} <= set(metrics)
    assert metrics["test/mse"] > metrics["test/mae"] ** 2 * 0.9  # in the target's units
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "test/mse" in summary and "test/mae" in summary and "test/r2" in summary


def test_csv_class_names_become_classes(tmp_path):
    rows = [[i, i % 3, ["cat", "dog"][i % 2]] for i in range(20)]
    datamodule = CSVDataModule(
        str(write_csv(tmp_path / "pets.csv", ["a", "b", "pet"], rows)), target="pet"
    )
    datamodule.setup()
    assert datamodule.classes == ["cat", "dog"]
    assert datamodule.spec.kind == "classification" and datamodule.spec.num_outputs == 2


GOOD = ["a,b,y", "1,2,3", "2,3,5", "3,4,7", "4,5,9", "5,6,11", "6,7,13", "7,8,15", "8,9,17"]


@pytest.mark.parametrize(
    ("lines", "target", "message"),
    [
        ([], "y", "is empty"),
        (["a,b,y"], "y", "has a header but no data rows"),
        (GOOD, "z", "data.target 'z' is not a column of .*; its columns: a, b, y"),
        (GOOD, None, "needs data.target=<column>; columns of .*: a, b, y"),
        ([*GOOD, "9,ten,19"], "y", "column 'b' holds 'ten', not a number, in data row 9"),
        ([*GOOD, "9,,19"], "y", "column 'b' holds an empty cell, not a number, in data row 9"),
        ([*GOOD, "9,10"], "y", "data row 9 has 2 cells, the header 3"),
        ([*GOOD, "9,10,many"], "y", "column 'y' holds 'many', not a number"),
    ],
    ids=["empty", "header-only", "no-column", "no-target", "text", "blank", "ragged", "target"],
)
def test_bad_csv_files_fail_in_one_line(make_config, tmp_path, lines, target, message):
    path = tmp_path / "table.csv"
    path.write_text("\n".join(lines))
    overrides = ["data=csv", f"data.path={path}", "data.kind=regression"]
    with pytest.raises(ConfigError, match=message) as raised:
        build_run(make_config(*overrides, *([f"data.target={target}"] if target else [])))
    assert "\n" not in str(raised.value)


def test_augment_on_a_table_is_refused(make_config):
    with pytest.raises(ConfigError, match="data.augment works on images; this data gives flat"):
        build_run(make_config("data=iris", "+data.augment=true"))


@pytest.mark.slow
def test_compare_sweep_on_a_table_runs_every_model_that_takes_vectors(tmp_path):
    logs = tmp_path / "logs"
    sweep = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            "experiment=compare",
            "data=iris",
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
    fits = models_for("vector")
    assert {"mlp", "neuron"} <= set(fits)
    assert sweep.stdout.count("test/acc") == len(fits)
    for name in set(zoo.list_models()) - set(fits):
        assert f"not applicable, skipped: model={name} " in sweep.stdout
