"""predict.py: a trained digits classifier on PNG files written here and on a .npy array, through
trainer.predict, with the checkpoint's own preprocessing."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from PIL import Image
from sklearn.datasets import load_digits

import zoo
from zoo.cli import predict as predict_cli
from zoo.data import DigitsDataModule
from zoo.run.training import train


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    """A CNN trained a few epochs on the digits: its best checkpoint."""
    folder = tmp_path_factory.mktemp("run")
    train(compose_config(folder, ["model=cnn", "trainer.max_epochs=4", "~callbacks.run_stats"]))
    return next((folder / "checkpoints").glob("best*.ckpt"))


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_png_files_are_preprocessed_like_the_training_data(digits_checkpoint, tmp_path, capsys):
    digits = load_digits()
    folder = tmp_path / "images"
    folder.mkdir()
    count = 60
    for i in range(count):  # the raw 0..16 digits as 8-bit PNGs; every other one at 4x the size
        image = Image.fromarray((digits.images[i] * 255 / 16).round().astype(np.uint8))
        image = image.resize((32, 32), Image.Resampling.NEAREST) if i % 2 else image
        image.save(folder / f"digit_{i:03d}.png")
    (folder / "notes.txt").write_text("not an image, not read")
    out = tmp_path / "preds.csv"
    assert (
        predict_cli.main([f"ckpt_path={digits_checkpoint}", f"inputs={folder}", f"out={out}"]) == 0
    )
    assert "wrote" in capsys.readouterr().out
    rows = read_csv(out)
    assert [row["file"] for row in rows] == [f"digit_{i:03d}.png" for i in range(count)]
    assert list(rows[0]) == [
        "file", "prediction", "top1_probability", "top2", "top2_probability", "top3",
        "top3_probability",
    ]  # fmt: skip
    predicted = np.array([int(row["prediction"]) for row in rows])
    accuracy = (predicted == digits.target[:count]).mean()
    assert accuracy >= 0.8, accuracy  # wrong scaling or normalisation would fall to chance
    first = [float(rows[0][k]) for k in ("top1_probability", "top2_probability")]
    assert 1 >= first[0] >= first[1] >= 0


def test_npy_inputs_give_the_models_own_predictions(digits_checkpoint, tmp_path):
    data = DigitsDataModule()
    data.setup()
    x = data.splits["test"][0][:20]
    np.save(tmp_path / "x.npy", x.numpy())
    out = tmp_path / "preds.csv"
    args = [f"ckpt_path={digits_checkpoint}", f"inputs={tmp_path / 'x.npy'}", f"out={out}"]
    assert predict_cli.main([*args, "top_k=2"]) == 0
    rows = read_csv(out)
    with torch.no_grad():
        expected = zoo.load(digits_checkpoint).eval()(x).argmax(-1).tolist()
    assert [int(row["prediction"]) for row in rows] == expected
    assert rows[3]["file"] == "x.npy[3]" and "top3" not in rows[0]


def test_the_checkpoint_records_the_datas_normalisation(digits_checkpoint):
    data = DigitsDataModule()
    data.setup()
    recorded = zoo.load(digits_checkpoint).image_normalisation
    assert recorded == data.image_normalisation and recorded["std"][0] > 0


def test_an_unreadable_image_is_one_line_naming_it(digits_checkpoint, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("L", (8, 8)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"not a png")
    out = tmp_path / "preds.csv"
    assert (
        predict_cli.main([f"ckpt_path={digits_checkpoint}", f"inputs={folder}", f"out={out}"]) == 2
    )
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot read {folder / 'b.png'} as an image")
    assert error.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "usage: python predict.py"),
        (["ckpt_path=missing.ckpt", "inputs=x"], "error: no checkpoint at"),
        (["inputs=nowhere"], "error: inputs must be a folder of images or a .npy file"),
        (["inputs=x", "top_k=0"], "error: top_k must be >= 1, got 0"),
    ],
)
def test_predict_bad_input_exits_2_and_writes_nothing(
    digits_checkpoint, tmp_path, capsys, args, message
):
    if args and not args[0].startswith("ckpt_path"):
        args = [f"ckpt_path={digits_checkpoint}", *args]
    assert predict_cli.main([*args, f"out={tmp_path}/preds.csv"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "preds.csv").exists()


def test_a_gan_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    from test_export import checkpoint

    ckpt = checkpoint("gan", "image", tmp_path)
    assert predict_cli.main([f"ckpt_path={ckpt}", f"inputs={tmp_path}"]) == 2
    assert "not a classifier or regressor" in capsys.readouterr().err


def test_a_regressor_predicts_its_values_and_old_checkpoints_still_work(tmp_path, capsys):
    from test_models import quiet_trainer

    from zoo.data import DataSpec
    from zoo.registry import build_model, model_config

    model = build_model(model_config("mlp"), DataSpec((1, 4, 4), 2, "regression"))
    trainer = quiet_trainer(max_epochs=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "old.ckpt")  # no data module: no recorded normalisation
    x = torch.randn(3, 1, 4, 4)
    np.save(tmp_path / "x.npy", x.numpy())
    out = tmp_path / "preds.csv"
    assert (
        predict_cli.main(
            [f"ckpt_path={tmp_path / 'old.ckpt'}", f"inputs={tmp_path / 'x.npy'}", f"out={out}"]
        )
        == 0
    )
    with torch.no_grad():
        expected = model.eval()(x)
    values = [[float(v) for v in row["prediction"].split()] for row in read_csv(out)]
    torch.testing.assert_close(torch.tensor(values), expected, rtol=1e-5, atol=1e-5)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("L", (4, 4), color=255).save(folder / "white.png")
    assert (
        predict_cli.main([f"ckpt_path={tmp_path / 'old.ckpt'}", f"inputs={folder}", f"out={out}"])
        == 0
    )
    assert "records no image normalisation" in capsys.readouterr().err


def test_a_folder_trained_checkpoint_predicts_new_photos_as_its_data_prepared_them(tmp_path):
    from images import picture, write_folder

    photos = write_folder(tmp_path / "photos")
    run = tmp_path / "run"
    overrides = ["data=folder", f"data.path={photos}", "data.image_size=12", "model=cnn"]
    metrics = train(compose_config(run, [*overrides, "trainer.max_epochs=8"]))
    assert metrics["test/acc"] >= 0.85, metrics
    new = tmp_path / "new"
    new.mkdir()
    for label in range(3):  # new pictures of each class, another size than the training ones
        picture(label, 99, label == 1, (15, 11)).save(new / f"{label}.png")
    ckpt = next((run / "checkpoints").glob("best-*.ckpt"))
    out = tmp_path / "preds.csv"
    assert predict_cli.main([f"ckpt_path={ckpt}", f"inputs={new}", f"out={out}"]) == 0
    assert [int(row["prediction"]) for row in read_csv(out)] == [0, 1, 2]
