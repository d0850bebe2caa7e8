"""Recurrent family and the adding problem: data, row-by-row reading, training end to end."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO

import zoo
from zoo.data import AddingDataModule
from zoo.errors import ConfigError
from zoo.nets import RecurrentNet
from zoo.registry import models_for
from zoo.run.training import train


def adding_splits(**args) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    datamodule = AddingDataModule(**{"seq_len": 20, "num_samples": 300, **args})
    datamodule.setup()
    return datamodule.splits


def test_adding_data_is_deterministic_by_seed():
    first, again, other = adding_splits(seed=3), adding_splits(seed=3), adding_splits(seed=4)
    for split in first:
        for a, b in zip(first[split], again[split]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(first["train"][0], other["train"][0])


def test_adding_data_shapes_and_targets():
    datamodule = AddingDataModule(seq_len=20, num_samples=300, seed=1)
    assert datamodule.spec.input_shape == (20, 2) and datamodule.spec.inputs == "sequence"
    assert datamodule.spec.num_outputs == 1 and datamodule.spec.kind == "regression"
    splits = datamodule.splits
    assert sum(len(x) for x, _ in splits.values()) == 300
    for inputs, targets in splits.values():
        values, markers = inputs[..., 0], inputs[..., 1]
        assert inputs.shape[1:] == (20, 2) and targets.shape == (len(inputs),)
        assert values.min() >= 0 and values.max() <= 1
        assert set(markers.unique().tolist()) == {0.0, 1.0}
        assert (markers[:, :10].sum(1) == 1).all() and (markers[:, 10:].sum(1) == 1).all()
        marked = values[markers.bool()].view(-1, 2)
        torch.testing.assert_close(targets, marked.sum(1))
    # The trivial baseline the experiment compares against: predicting the mean, MSE ~ 1/6.
    all_targets = torch.cat([t for _, t in splits.values()])
    assert ((all_targets - 1.0) ** 2).mean() == pytest.approx(1 / 6, abs=0.03)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"seq_len": 1}, "seq_len must be an integer >= 2"),
        ({"num_samples": 0}, "num_samples must be an integer >= 3"),
    ],
)
def test_adding_data_rejects_bad_sizes(args, message):
    with pytest.raises(ValueError, match=message):
        AddingDataModule(**args)


def test_an_image_is_read_row_by_row():
    torch.manual_seed(0)
    image_model = RecurrentNet((3, 5, 4), num_outputs=7, cell="gru", hidden_size=16)
    sequence_model = RecurrentNet((5, 12), num_outputs=7, cell="gru", hidden_size=16)
    sequence_model.load_state_dict(image_model.state_dict())
    images = torch.randn(2, 3, 5, 4)
    rows = images.permute(0, 2, 1, 3).reshape(2, 5, 12)  # row h = channels' row h side by side
    torch.testing.assert_close(image_model(images), sequence_model(rows))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_stacked_bidirectional_options(cell):
    model = zoo.create_model(
        cell,
        input_shape=(6, 3),
        num_classes=2,
        num_layers=2,
        bidirectional=True,
        dropout=0.2,
        hidden_size=8,
    )
    rnn = model.net.rnn
    assert rnn.num_layers == 2 and rnn.bidirectional and rnn.dropout == 0.2
    assert model.net.head[-1].in_features == 16  # both directions of the last layer
    output = model(torch.randn(4, 6, 3))
    assert output.shape == (4, 2)
    output.sum().backward()
    assert rnn.weight_hh_l1_reverse.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"cell": "transformer"}, "model.cell must be one of"),
        ({"hidden_size": 0}, "model.hidden_size must be a positive integer"),
        ({"num_layers": 0}, "model.num_layers must be a positive integer"),
        ({"dropout": 1.0}, "model.dropout must be in [0, 1)"),
    ],
)
def test_invalid_arguments_raise_one_clear_error(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RecurrentNet((8, 8), num_outputs=10, **args)


def test_flat_input_is_refused_with_a_pointer_to_the_mlp():
    with pytest.raises(ValueError, match="RecurrentNet needs a sequence"):
        RecurrentNet((64,), num_outputs=10)
    with pytest.raises(ValueError, match="model=lstm .*models that take vectors: mlp, neuron$"):
        zoo.create_model("lstm", (64,), 10)


def test_bad_override_fails_before_training(make_config, tmp_path):
    with pytest.raises(ConfigError, match="model.cell must be one of"):
        train(make_config("model=lstm", "model.cell=lstn"))
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("model", ["mlp", "lstm"])
def test_regression_on_the_adding_problem_runs(make_config, model):
    config = make_config(
        "experiment=adding",
        f"model={model}",
        "data.seq_len=10",
        "data.num_samples=200",
        "+trainer.fast_dev_run=true",
    )
    metrics = train(config)
    assert "test/acc" not in metrics and "val/acc" not in metrics
    # The regression loss is the MSE; the metric says so independently.
    assert metrics["test/mse"] == pytest.approx(metrics["test/loss"], rel=1e-4)


def test_cnn_on_sequences_exits_with_one_clear_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "model=cnn",
            "data=adding",
            "paths.log_dir=" + str(tmp_path / "logs"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        (
            "error: model=cnn (ConvNet) takes images (channels, height, width); this data gives "
            "sequences (time steps, features) of shape (50, 2); models that take sequences: "
            + ", ".join(models_for("sequence"))
        )
    ]
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_short_run_on_digits_rows_reaches_accuracy(make_config, model):
    metrics = train(make_config(f"model={model}", "trainer.max_epochs=12", "optimizer.lr=0.003"))
    assert metrics["test/acc"] >= 0.95
