"""Autoencoders (model=ae, model=vae): shapes, the KL term, learning, code scores, pictures,
sampling and bad options."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision.io import read_image

import zoo
from zoo.cli import sample
from zoo.data import DigitsDataModule
from zoo.errors import ConfigError
from zoo.metrics.codes import kmeans_nmi, probe_accuracy
from zoo.nets import AutoEncoder
from zoo.nets.autoencoder import gaussian_kl
from zoo.run.training import build_run, train
from zoo.tasks import Reconstruction, VariationalReconstruction

CONV = {
    "encoder": {"_target_": "zoo.nets.ConvEncoder", "widths": [8, 16]},
    "decoder": {"_target_": "zoo.nets.ConvDecoder", "widths": [16, 8]},
}


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("pair", ["mlp", "conv"])
@pytest.mark.parametrize("name", ["ae", "vae"])
def test_images_round_trip_in_shape_through_a_code_of_latent_dim(name, pair, shape):
    options = {"latent_dim": 5, **(CONV if pair == "conv" else {})}
    model = zoo.create_model(name, shape, 10, **options).eval()
    assert isinstance(model.net, AutoEncoder) and not isinstance(model.net, L.LightningModule)
    x = torch.randn(3, *shape)
    assert model(x).shape == x.shape
    assert model.code(x).shape == (3, 5)
    if name == "vae":
        mean, log_var = model.net.encode(x)
        assert mean.shape == log_var.shape == (3, 5)
        assert model.sample(4).shape == (4, *shape)


def test_the_kl_term_is_zero_with_zero_gradient_only_at_the_standard_normal():
    mean = torch.zeros(4, 3, requires_grad=True)
    log_var = torch.zeros(4, 3, requires_grad=True)
    kl = gaussian_kl(mean, log_var)
    assert kl.shape == (4,) and torch.equal(kl, torch.zeros(4))
    kl.sum().backward()
    assert torch.equal(mean.grad, torch.zeros(4, 3)) and torch.equal(
        log_var.grad, torch.zeros(4, 3)
    )
    shifted = gaussian_kl(torch.ones(1, 3), torch.zeros(1, 3))  # 3 dims, each mean^2 / 2
    torch.testing.assert_close(shifted, torch.tensor([1.5]))
    assert float(gaussian_kl(torch.zeros(1, 3), torch.full((1, 3), 0.5))) > 0


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_training_lowers_the_held_out_reconstruction_error(name):
    torch.manual_seed(0)
    data = DigitsDataModule(batch_size=64)
    data.setup("fit")
    model = zoo.create_model(name, (1, 8, 8), 10)
    x = data.splits["val"][0]

    def error() -> float:
        with torch.no_grad():
            return float((model.eval()(x) - x).square().mean())

    before = error()
    model.train()
    L.Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(model, data)
    assert error() < 0.7 * before, (before, error())


def test_denoising_drops_the_noise_fraction_of_the_inputs_and_noise_0_none():
    model = zoo.create_model("ae", (1, 28, 28), 10, noise=0.3)
    x = torch.ones(64, 1, 28, 28)
    dropped = float((model.corrupt(x) == 0).float().mean())
    assert dropped == pytest.approx(0.3, abs=0.02)
    assert torch.equal(zoo.create_model("ae", (1, 28, 28), 10, noise=0).corrupt(x), x)


def test_codes_of_known_clusters_score_near_one_and_random_labels_near_zero():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(50)
    centres = 10 * torch.randn(4, 6, generator=generator)
    codes = centres[labels] + torch.randn(200, 6, generator=generator)
    assert float(kmeans_nmi(codes, labels, 4)) > 0.99
    shuffled = labels[torch.randperm(200, generator=generator)]
    assert float(kmeans_nmi(codes, shuffled, 4)) < 0.1
    assert float(probe_accuracy(codes[::2], labels[::2], codes[1::2], labels[1::2])) == 1.0
    assert float(probe_accuracy(codes[::2], shuffled[::2], codes[1::2], shuffled[1::2])) < 0.5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.latent_dim=0", "model.latent_dim must be a positive integer, got 0"),
        ("model.noise=1.0", "model.noise must be in [0, 1), got 1.0"),
        ("model.noise=-0.1", "model.noise must be in [0, 1), got -0.1"),
        ("model.encoder.widths=[]", "model.encoder.widths must be a non-empty list"),
        ("model.decoder.widths=[0]", "model.decoder.widths must be a non-empty list"),
        ("model.encoder.widths=abc", "model.encoder.widths must be a list of integers"),
        ("+model.decoder.depth=2", "takes no option 'depth'"),
    ],
)
@pytest.mark.parametrize("name", ["ae", "vae"])
def test_bad_options_fail_in_one_line_before_training(make_config, name, override, message):
    with pytest.raises(ConfigError) as raised:
        build_run(make_config(f"model={name}", override))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_negative_beta_and_beta_on_the_plain_ae_are_refused(make_config):
    with pytest.raises(ConfigError, match=r"model.beta must be a number >= 0, got -1"):
        build_run(make_config("model=vae", "model.beta=-1"))
    with pytest.raises(ConfigError, match="Reconstruction takes no option 'beta'"):
        build_run(make_config("model=ae", "+model.beta=1"))


@pytest.mark.slow
def test_the_vae_logs_its_loss_parts_pictures_scores_and_embedding_and_samples_a_png(
    make_config, tmp_path
):
    metrics = train(
        make_config(
            "model=vae",
            "trainer.max_epochs=2",
            "+trainer.limit_train_batches=4",
            "trainer.log_every_n_steps=1",
        )
    )
    expected = {"test/loss", "test/recon", "test/kl", "test/nmi", "test/nmi_pixels"}
    assert expected | {"test/probe_acc", "val/kl"} <= set(metrics)
    assert 0 <= metrics["test/nmi"] <= 1 and 0 < metrics["test/probe_acc"] <= 1
    torch.testing.assert_close(
        metrics["test/loss"], metrics["test/recon"] + metrics["test/kl"], rtol=1e-4, atol=1e-4
    )
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert {"train/recon_step", "train/kl_epoch", "val/recon"} <= set(events.Tags()["scalars"])
    assert set(events.Tags()["images"]) == {"reconstructions", "samples", "latent_walk"}
    grid = events.Images("reconstructions")[-1]
    assert grid.width > 2 * grid.height  # 16 inputs above their 16 reconstructions
    projector = (tmp_path / "projector_config.pbtxt").read_text()
    assert "test_codes" in projector and "sprite" in projector and "metadata" in projector

    out = tmp_path / "vae.png"
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert sample.main([f"ckpt_path={last}", "n=16", "nrow=4", f"out={out}"]) == 0
    image = read_image(str(out))
    assert image.shape[0] == 3 and image.shape[1] == image.shape[2] >= 4 * 8


@pytest.mark.slow
def test_sampling_a_plain_autoencoder_is_refused_in_one_line(make_config, tmp_path, capsys):
    config = make_config("model=ae", "trainer.max_epochs=1", "+trainer.limit_train_batches=2")
    assert {"test/loss", "test/nmi", "test/nmi_pixels", "test/probe_acc"} <= set(train(config))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert isinstance(zoo.load(last), Reconstruction)
    assert not isinstance(zoo.load(last), VariationalReconstruction)
    assert sample.main([f"ckpt_path={last}", f"out={tmp_path}/x.png"]) == 2
    assert "not a GAN, a VAE or a language model" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
