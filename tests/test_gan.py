"""The GAN family end to end: the score's sanity anchors, TensorBoard output, sampling."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import REPO, hparams_row
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision.io import read_image

import zoo
from zoo.cli import sample
from zoo.data import DigitsDataModule
from zoo.metrics import fid
from zoo.run.training import train


def frechet(features, real, other) -> float:
    metric = fid.frechet_distance(features)
    metric.update(real, real=True)
    metric.update(other, real=False)
    return float(metric.compute())


@pytest.mark.slow
def test_score_ranks_real_images_far_above_noise_and_an_untrained_generator():
    torch.manual_seed(0)
    data = DigitsDataModule()
    key, _, low, high = fid.fingerprint(data.train_dataloader())
    features = fid.feature_extractor(data, key, epochs=5, cache_dir=None)
    val, test = data.splits["val"][0], data.splits["test"][0]
    noise = low + (high - low) * torch.rand_like(test)
    scores = {"real": frechet(features, val, test), "noise": frechet(features, val, noise)}
    for name in ("gan", "dcgan"):
        generator = zoo.create_model(name, input_shape=(1, 8, 8), num_classes=10)
        generator.data_low.fill_(float(low)), generator.data_high.fill_(float(high))
        with torch.no_grad():
            scores[name] = frechet(features, val, generator.sample(len(test)))
    assert all(scores["real"] * 5 < scores[k] for k in ("noise", "gan", "dcgan")), scores


@pytest.mark.slow
def test_one_epoch_logs_losses_discriminator_outputs_samples_and_scores(make_config, tmp_path):
    config = make_config(
        "model=gan",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=4",
        "trainer.log_every_n_steps=1",
        "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=2",
        "model.fid_classifier_epochs=1",
        "model.g_lr=3e-4",
    )
    metrics = train(config)
    assert {"val/fid", "test/fid"} <= set(metrics) and metrics["test/fid"] > 0
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    expected = {
        f"train/{name}_{when}"
        for name in ("g_loss", "d_loss", "d_real", "d_fake")
        for when in ("step", "epoch")
    } | {"val/fid", "test/fid", "lr-generator", "lr-discriminator"}
    assert expected <= set(events.Tags()["scalars"])
    row = hparams_row(events)
    assert row["lr.generator"].number_value == pytest.approx(3e-4)  # not the optimizer yaml's
    assert row["task"].string_value == "Adversarial" and "lr" not in row
    assert events.Tags()["images"] == ["samples"]
    image = events.Images("samples")[0]
    assert image.width >= 8 * 8 and image.height >= 8 * 8  # an 8x8 grid of 8x8 digits, or larger
    checkpoints = {p.name for p in (tmp_path / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in checkpoints and any(n.startswith("best") for n in checkpoints)
    assert list((tmp_path / "data" / "fid").glob("*.pt"))  # the classifier is cached

    out = tmp_path / "grid.png"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "sample.py"),
            "n=16",
            "nrow=4",
            f"out={out}",
            f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    grid = read_image(str(out))
    assert grid.shape[0] == 3 and grid.shape[1] == grid.shape[2] >= 4 * 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "usage: python sample.py"),
        (["ckpt_path=missing.ckpt"], "error: no checkpoint at"),
        (["ckpt_path=" + __file__], "error: cannot read checkpoint"),
    ],
)
def test_sample_bad_input_exits_nonzero_and_writes_nothing(tmp_path, capsys, args, message):
    assert sample.main([*args, f"out={tmp_path}/x.png"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
