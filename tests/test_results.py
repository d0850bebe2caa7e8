"""zoo results: the suite's pairs, aggregation over seeds, baselines on the same splits, the
written table and csv (the quick profile end to end), identical numbers for the same seeds; the
neuron's recipe; compare's one row per seed group."""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import compose_config

from zoo.cli.compare import Run, merge_seeds, report
from zoo.cli.results import main
from zoo.data import AddingDataModule, DigitsDataModule
from zoo.metrics.baselines import (
    classification_baselines,
    data_baselines,
    mean_baseline,
    pixel_clusters,
    regression_baselines,
)
from zoo.registry import list_models
from zoo.run.results import (
    Summary,
    aggregate,
    by_task,
    higher_is_better,
    leads,
    load_suite,
    mean_std,
    suite_pairs,
    write_csv,
    write_points,
)
from zoo.run.training import train

GIVES = {  # what each suite dataset gives, as zoo.run.results.data_inputs reports it
    "digits": ("image",),
    "iris": ("vector",),
    "wine": ("vector",),
    "breast_cancer": ("vector",),
    "diabetes": ("vector",),
    "text": ("tokens",),
    "listops": ("tree", "tokens"),
    "adding": ("sequence",),
}


def fake_run(model, dataset, seed, task="Supervised", folder="f", **last):
    scalars = {tag: [(0, 0.0), (1, value)] for tag, value in last.items()}
    return SimpleNamespace(
        model=model,
        dataset=dataset,
        folder=Path(folder),
        scalars=scalars,
        hparams={"task": task, "seed": float(seed)},
    )


def test_summary_is_mean_sample_std_min_max():
    found = Summary.of([0.8, 0.9, 1.0])
    assert found.mean == pytest.approx(0.9) and found.std == pytest.approx(0.1)
    assert (found.n, found.low, found.high) == (3, 0.8, 1.0)
    assert Summary.of([2.5]).std == 0.0
    assert mean_std(Summary.of([0.9, 0.95])) == "0.9250 ± 0.0354"
    assert mean_std(Summary.of([50826.0, 50826.0])) == "50,826 ± 0"


def test_aggregation_groups_seeds_and_orders_best_first_by_the_headline(tmp_path):
    runs = [
        fake_run("mlp", "iris", 42, **{"test/acc": 0.8, "run/fit_seconds": 2.0}),
        fake_run("mlp", "iris", 43, **{"test/acc": 1.0, "run/fit_seconds": 4.0}),
        fake_run("neuron", "iris", 42, **{"test/acc": 0.95}),
        fake_run("mlp", "diabetes", 42, **{"test/mse": 3000.0, "test/r2": 0.4}),
        fake_run("neuron", "diabetes", 42, **{"test/mse": 2900.0, "test/r2": 0.45}),
    ]
    rows = aggregate(runs)
    tables = by_task(rows)
    assert list(tables) == ["Supervised: test/acc", "Supervised: test/mse"]  # one per headline
    ordered = tables["Supervised: test/acc"][1]
    metric, regression = tables["Supervised: test/mse"]
    assert [r.model for r in regression] == ["neuron", "mlp"]  # lower mse first
    assert not higher_is_better(metric) and higher_is_better("test/r2")
    mlp = next(r for r in rows if (r.model, r.dataset) == ("mlp", "iris"))
    assert mlp.seeds == [42, 43] and mlp.values["test/acc"] == [0.8, 1.0]
    assert mlp.summary("run/fit_seconds").mean == 3.0
    assert [(r.model, r.dataset) for r in ordered if r.dataset == "iris"] == [
        ("neuron", "iris"),  # 0.95 > mean 0.9
        ("mlp", "iris"),
    ]
    path = write_csv(rows, {"iris": {"constant": {"test/acc": 0.3}}}, tmp_path / "r.csv")
    lines = list(csv.DictReader(path.open()))
    assert list(lines[0]) == [
        "task",
        "model",
        "dataset",
        "metric",
        "mean",
        "std",
        "seeds",
        "min",
        "max",
    ]
    acc = next(ln for ln in lines if ln["model"] == "mlp" and ln["metric"] == "test/acc")
    assert float(acc["mean"]) == pytest.approx(0.9) and acc["seeds"] == "2"
    assert float(acc["std"]) == pytest.approx(math.sqrt(0.02))
    assert (float(acc["min"]), float(acc["max"])) == (0.8, 1.0)
    assert any(ln["task"] == "baseline" and ln["mean"] == "0.3" for ln in lines)


def test_leads_say_by_how_much_and_when_the_spread_is_larger():
    rows = aggregate(
        [
            fake_run("mlp", "iris", 42, **{"test/acc": 0.9}),
            fake_run("mlp", "iris", 43, **{"test/acc": 1.0}),
            fake_run("neuron", "iris", 42, **{"test/acc": 0.5}),
        ]
    )
    lines = leads(rows, {"iris": {"majority": {"test/acc": 0.3}, "svc": {"test/acc": 0.9}}})
    assert lines == [
        (
            "- mlp on iris beats the best baseline, svc (test/acc 0.9000), by 0.05000; its "
            "spread over seeds (std 0.07071) is larger than that"
        ),
        "- neuron on iris trails the best baseline, svc (test/acc 0.9000), by 0.4000",
    ]


def test_baselines_against_hand_computed_values():
    x = np.array([[0.0], [0.1], [1.0], [1.1], [0.05]])
    y = np.array([0, 0, 1, 1, 0])
    found = classification_baselines(x, y, np.array([[0.02], [1.05]]), np.array([0, 1]))
    assert found["constant (majority class)"] == {"test/acc": 0.5}
    assert found["logistic regression (scikit-learn)"]["test/acc"] == 1.0
    assert found["RBF SVC (scikit-learn)"]["test/acc"] == 1.0
    mean = mean_baseline(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0]))
    assert mean["constant (training mean)"] == {"test/mse": 2.0, "test/mae": 1.0, "test/r2": -1.0}
    line = np.arange(10.0)[:, None]
    fit = regression_baselines(
        line, 3 * line[:, 0] + 1, np.array([[20.0], [30.0]]), np.array([61.0, 91.0])
    )
    assert fit["linear regression (scikit-learn)"]["test/mse"] == pytest.approx(0.0, abs=1e-9)
    blobs = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    nmi = pixel_clusters(blobs, torch.tensor([0, 0, 1, 1]), 2)
    assert nmi["k-means on raw pixels"]["test/nmi"] == pytest.approx(1.0)


def test_data_baselines_use_the_data_modules_own_splits():
    digits = DigitsDataModule(seed=3)
    found = data_baselines(digits)
    assert set(found) == {
        "constant (majority class)",
        "logistic regression (scikit-learn)",
        "RBF SVC (scikit-learn)",
        "k-means on raw pixels",
    }
    train_y, test_y = digits.splits["train"][1], digits.splits["test"][1]
    majority = torch.bincount(train_y).argmax()
    assert found["constant (majority class)"]["test/acc"] == pytest.approx(
        float((test_y == majority).float().mean())
    )
    assert found["logistic regression (scikit-learn)"]["test/acc"] > 0.9
    adding = AddingDataModule(seq_len=5, num_samples=200)
    mse = data_baselines(adding)["constant (training mean)"]["test/mse"]
    train_t, test_t = (adding.splits[s][1].double().flatten() for s in ("train", "test"))
    assert mse == pytest.approx(float(((test_t - train_t.mean()) ** 2).mean()))


def test_every_model_yaml_joins_the_suite_by_what_it_accepts():
    suite = load_suite("full")
    pairs = suite_pairs(list_models(), list(suite.datasets), GIVES.__getitem__)
    assert {model for model, _ in pairs} == set(list_models())
    assert ("mlp", "iris") in pairs and ("cnn", "iris") not in pairs
    assert ("treelstm", "listops") in pairs and ("gpt", "listops") in pairs
    assert (
        ("gpt", "text") in pairs and ("lstm", "adding") in pairs and ("cnn", "adding") not in pairs
    )


def test_points_choose_model_and_data_and_carry_the_profiles_overrides(tmp_path, make_config):
    suite = load_suite("quick")
    assert suite.overrides[0] == "~callbacks.progress_bar"  # suite.yaml's, then the profile's
    assert "trainer.max_epochs=2" in suite.overrides
    names = write_points(tmp_path / "suite", [("lstm", "listops")], suite)
    assert names == ["lstm-listops"]
    config = make_config(f"hydra.searchpath=[file://{tmp_path / 'suite'}]", "+point=lstm-listops")
    assert config.model.cell == "lstm" and config.data._target_.endswith("ListOpsDataModule")
    assert config.data.num_train == 1000


def test_a_pairs_overrides_reach_that_point_only(tmp_path, make_config):
    suite = load_suite("full")
    assert suite.pairs["gpt-listops"], "the full profile caps the GPT on ListOps"
    write_points(tmp_path / "suite", [("gpt", "listops"), ("gpt", "text")], suite)
    searchpath = f"hydra.searchpath=[file://{tmp_path / 'suite'}]"
    capped = make_config(searchpath, "+point=gpt-listops")
    default = make_config(searchpath, "+point=gpt-text")
    assert (capped.model.width, capped.model.depth, capped.trainer.max_epochs) == (64, 2, 4)
    assert (default.model.width, default.trainer.max_epochs) == (128, 20)


def test_bad_options_are_one_error_line(capsys):
    assert main(["profile=nope"]) == 2
    assert main(["models=nope"]) == 2
    assert main(["justaword"]) == 2
    assert main(["runs=/no/such/folder"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines)
    assert "profiles: full, quick" in lines[0]


@pytest.mark.slow
def test_quick_profile_writes_the_table_and_the_same_seeds_give_the_same_numbers(tmp_path, capfd):
    common = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}"]
    common += ["profile=quick", "seeds=2", "threads=1"]
    out = tmp_path / "docs"
    assert main([*common, "models=neuron,vae", "datasets=iris,digits", f"out={out}"]) == 0
    printed = capfd.readouterr().out
    assert "results: point 1 of 6 done (" in printed and "results: point 6 of 6 done (" in printed
    text = (out / "results.md").read_text()
    assert text.startswith("# Results (quick profile)") and "quick profile" in text.splitlines()[2]
    assert "## Supervised: test/acc (higher is better)" in text
    assert "## VariationalReconstruction: test/nmi (higher is better)" in text
    assert "| *k-means on raw pixels* | digits |" in text
    assert "| *logistic regression (scikit-learn)* | iris |" in text
    with (out / "results.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    models = {(ln["model"], ln["dataset"]) for ln in lines if ln["task"] != "baseline"}
    assert models == {("neuron", "iris"), ("neuron", "digits"), ("vae", "digits")}
    assert all(ln["seeds"] == "2" for ln in lines if ln["task"] != "baseline")
    metrics = {ln["metric"] for ln in lines if ln["model"] == "vae"}
    assert {"test/nmi", "test/loss", "run/parameters", "run/fit_seconds"} <= metrics
    for name in ("vae-digits-samples.png", "vae-digits-latent_walk.png"):
        assert (out / "results" / name).read_bytes().startswith(b"\x89PNG")
        assert f"(results/{name})" in text
    (runs,) = (tmp_path / "logs" / "results").glob("quick_*/runs")
    # No training, in a process of its own (nothing registered by the tests' conftest).
    again_cli = "from zoo.cli.results import main; raise SystemExit(main())"
    table = ["profile=quick", f"runs={runs}", f"out={tmp_path / 'table'}"]
    done = subprocess.run([sys.executable, "-c", again_cli, *table], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "table" / "results.csv").read_text() == (out / "results.csv").read_text()
    assert re.search(r"whose runs took \d+", (tmp_path / "table" / "results.md").read_text())
    again = tmp_path / "again"
    assert main([*common, "models=neuron", "datasets=iris", f"out={again}"]) == 0
    with (again / "results.csv").open() as handle:
        repeat = {(ln["model"], ln["metric"]): ln for ln in csv.DictReader(handle)}
    for line in lines:
        if line["model"] == "neuron" and line["dataset"] == "iris" and "test/" in line["metric"]:
            twin = repeat[("neuron", line["metric"])]
            assert (twin["mean"], twin["std"]) == (line["mean"], line["std"]), line["metric"]


def test_the_neuron_yaml_carries_its_learning_rate(tmp_path):
    assert compose_config(tmp_path, ["model=neuron"]).optimizer.lr == 0.05
    assert compose_config(tmp_path, ["model=neuron", "optimizer.lr=0.01"]).optimizer.lr == 0.01
    assert compose_config(tmp_path, ["model=mlp"]).optimizer.lr == 0.001


@pytest.mark.slow
def test_the_neurons_default_command_fits_a_linear_relation(tmp_path):
    celsius = np.linspace(-40, 100, 120)
    rows = "\n".join(f"{c:.2f},{1.8 * c + 32:.2f}" for c in celsius)
    (tmp_path / "celsius.csv").write_text("celsius,fahrenheit\n" + rows + "\n")
    options = ["model=neuron", "data=csv", f"data.path={tmp_path / 'celsius.csv'}"]
    options += ["data.target=fahrenheit", "threads=1"]
    fitted = train(compose_config(tmp_path / "run", options))
    assert fitted["test/r2"] > 0.999


def test_compare_shows_runs_that_differ_only_by_seed_as_one_row(tmp_path):
    def run(seed: int, best: float, test: float, model: str = "mlp") -> Run:
        scalars = {"val/acc": [(0, best - 0.1), (1, best)], "test/acc": [(2, test)]}
        folder = tmp_path / f"{model}-digits" / f"seed={seed}_abc{seed}"
        hparams = {"task": "Supervised", "seed": float(seed)}
        return Run(folder, model, "digits", scalars, hparams, [f"seed={seed}"])

    runs = [run(1, 0.9, 0.8), run(2, 0.8, 0.9), run(3, 0.7, 0.7, model="cnn")]
    merged = merge_seeds(runs)
    assert len(merged) == 2
    text = report(runs, tmp_path, ("run", "model", "best", "test"), 200)
    rows = [line for line in text.splitlines() if " mlp " in line]
    assert len(rows) == 1, text
    assert "seed=1,2" in rows[0] and "0.8500 ± 0.0707 (n=2)" in rows[0]
    assert text.index(" mlp ") < text.index(" cnn ")  # best first, by the mean
