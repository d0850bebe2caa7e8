"""End to end: the real config, a real Trainer, TensorBoard files and checkpoints on disk."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, compose_config, hparams_tab
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from zoo.errors import ConfigError
from zoo.run.training import build_run, train

EXPECTED_SCALARS = {
    "train/loss_step",
    "train/loss_epoch",
    "val/loss",
    "val/acc",
    "test/loss",
    "test/acc",
    "epoch",
    "lr-Adam",
}


def scalars(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_train_writes_metrics_hparams_and_checkpoints(make_config, tmp_path):
    config = make_config("model=mlp", "trainer.max_epochs=2")
    metrics = train(config)
    assert {"val/loss", "val/acc", "test/loss", "test/acc"} <= set(metrics)
    events = scalars(tmp_path)
    assert EXPECTED_SCALARS <= set(events.Tags()["scalars"])
    assert len(events.Scalars("val/acc")) == 2  # one per epoch
    tab = hparams_tab(events)
    layout = tab["_hparams_/experiment"].experiment
    metric_tags = {m.name.tag for m in layout.metric_infos}
    assert {"val/acc", "val/loss", "test/acc", "test/loss", "val/fid", "test/mse"} <= metric_tags
    columns = {info.name for info in layout.hparam_infos}
    assert {"lr.generator", "model.cell", "model.activation", "model.g_lr"} <= columns  # others'
    start = tab["_hparams_/session_start_info"].session_start_info
    assert start.hparams["net"].string_value == "FeedForward"
    assert start.hparams["model.hidden_sizes"].string_value == "[256, 128]"
    assert start.hparams["lr"].number_value == pytest.approx(1e-3)
    checkpoints = {p.name for p in (tmp_path / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in checkpoints and any(n.startswith("best") for n in checkpoints)


@pytest.mark.parametrize("every", [1, 5])
def test_train_loss_written_on_lightnings_logging_steps_and_epoch_mean_is_weighted(tmp_path, every):
    config = compose_config(
        tmp_path, ["model=mlp", "trainer.max_epochs=2", f"trainer.log_every_n_steps={every}"]
    )
    datamodule, model, trainer = build_run(config)
    trainer.fit(model, datamodule=datamodule)
    train_size, batch = len(datamodule.splits["train"][0]), datamodule.batch_size
    sizes = [batch] * (train_size // batch) + ([train_size % batch] if train_size % batch else [])
    events = scalars(tmp_path)
    steps = events.Scalars("train/loss_step")
    assert [e.step for e in steps] == [s for s in range(2 * len(sizes)) if (s + 1) % every == 0]
    epochs = events.Scalars("train/loss_epoch")
    assert len(epochs) == 2 and epochs[1].value < epochs[0].value
    if every == 1:  # every step seen: the epoch value is the batch-size-weighted mean of the steps
        for epoch, logged in enumerate(epochs):
            losses = [e.value for e in steps[epoch * len(sizes) : (epoch + 1) * len(sizes)]]
            weighted = sum(loss * n for loss, n in zip(losses, sizes)) / sum(sizes)
            assert logged.value == pytest.approx(weighted, rel=1e-5)


def test_test_metrics_equal_a_direct_computation_over_the_whole_split(tmp_path):
    datamodule, model, trainer = build_run(
        compose_config(tmp_path, ["model=mlp", "trainer.max_epochs=1"])
    )
    trainer.fit(model, datamodule=datamodule)
    logged = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    x, y = datamodule.splits["test"]
    assert len(x) % datamodule.batch_size  # a smaller last batch: the means must weight it
    with torch.no_grad():
        output = model.eval()(x)
    assert logged["test/loss"] == pytest.approx(F.cross_entropy(output, y).item(), rel=1e-5)
    assert logged["test/acc"] == pytest.approx((output.argmax(-1) == y).float().mean().item())


@pytest.mark.slow
@pytest.mark.parametrize(("model", "epochs", "target"), [("cnn", 15, 0.97), ("mlp", 20, 0.95)])
def test_short_real_run_reaches_accuracy(make_config, model, epochs, target):
    metrics = train(make_config(f"model={model}", f"trainer.max_epochs={epochs}"))
    assert metrics["test/acc"] >= target


@pytest.mark.parametrize(
    "overrides",
    [
        ["optimizer=sgd", "optimizer.lr=0.05", "data.batch_size=1", "trainer.max_steps=20"],
        ["data.batch_size=2000", "optimizer=momentum"],  # full batch: one step per epoch
        ["model=mlp", "model.hidden_sizes=[16,8]", "model.activation=tanh", "model.dropout=0.2"],
        ["model=mlp", "model.activation=step", "optimizer=rmsprop"],
        ["optimizer=adagrad", "scheduler=cosine", "seed=7"],
        ["optimizer=asgd", "scheduler=plateau"],
    ],
    ids=["sgd-stochastic", "full-batch", "mlp-tanh", "step-activation", "cosine", "plateau"],
)
def test_overrides_train(make_config, overrides):
    config = make_config(*overrides, "trainer.max_epochs=1")
    assert train(config)["test/acc"] > 0


def test_onecycle_warms_up_then_decays_over_the_whole_run(make_config):
    config = make_config(
        "optimizer=adamw", "optimizer.lr=0.01", "scheduler=onecycle", "trainer.max_epochs=2"
    )
    datamodule, model, trainer = build_run(config)
    seen = []
    rate = lambda *args: seen.append(trainer.optimizers[0].param_groups[0]["lr"])
    model.on_train_batch_start = rate
    trainer.fit(model, datamodule=datamodule)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.total_steps == trainer.global_step == len(seen) > 10  # null: the run's steps
    peak = seen.index(max(seen))
    assert max(seen) == pytest.approx(0.01, rel=0.01) and 0 < peak < len(seen) - 1
    assert seen[0] == pytest.approx(0.01 / 25) and seen[-1] < 0.0011  # down to a tenth of lr


def test_onecycle_over_an_endless_run_is_one_error_before_training(make_config, tmp_path):
    config = make_config("scheduler=onecycle", "trainer.max_epochs=-1")
    with pytest.raises(ConfigError, match="scheduler.total_steps=null needs a run of known length"):
        train(config)
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=0", "optimizer.lr must be > 0"),
        ("optimizer.lr=-1", "optimizer.lr must be > 0"),
        ("model=mlp model.hidden_sizes=[64,0]", "hidden_sizes must be a list of positive"),
        ("model.dropout=1.0", "dropout must be in [0, 1)"),
        ("model.dropout=-0.1", "dropout must be in [0, 1)"),
        ("data.batch_size=0", "batch_size must be an integer >= 1"),
        ("model=mlp model.activation=swish", "activation must be one of"),
        ("optimizer=momentum optimizer.momentum=-3", "invalid optimizer"),
        ("trainer.max_epochs=abc", "trainer.max_epochs must be an integer, got 'abc'"),
        ("seed=1.5", "seed must be an integer, got 1.5"),
        ("model=mlp +model.hidden_size=3", "FeedForward takes no option 'hidden_size'"),
    ],
)
def test_invalid_values_fail_before_training(make_config, tmp_path, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(make_config(*override.split()))
    assert not (tmp_path / "checkpoints").exists()


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args, "paths.log_dir=" + str(cwd / "logs")],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model=resnet9000"], "Available options in 'model'"),
        (["optimizer=lbfgs2"], "Available options in 'optimizer'"),
        (["optimizer.lr=-0.1"], "error: optimizer.lr must be > 0"),
    ],
)
def test_cli_bad_input_exits_nonzero_with_a_clear_message(tmp_path, args, expected):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


def test_cli_multirun_trains_each_model_in_its_own_folder(tmp_path):
    result = run_cli("-m", "model=mlp,cnn", "trainer.max_epochs=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = sorted({p.parent.name for p in (tmp_path / "logs").rglob("events.out.tfevents.*")})
    assert (
        len(runs) == 2 and "mlp-digits" in runs[0] + runs[1] and "cnn-digits" in runs[0] + runs[1]
    )
    assert result.stdout.count("test/acc") == 2  # one summary line per run
