"""Generic tests over every conf/model/*.yaml: adding a yaml adds its tests."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import get_class

import zoo
from zoo.data import InMemoryLoader
from zoo.models import GAN, SupervisedModule
from zoo.registry import model_config

MODELS = zoo.list_models()
FAMILIES = {name: get_class(model_config(name)._target_) for name in MODELS}
SUPERVISED = [name for name, cls in FAMILIES.items() if issubclass(cls, SupervisedModule)]
ADVERSARIAL = [name for name, cls in FAMILIES.items() if issubclass(cls, GAN)]
INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10


def build(name: str, **overrides) -> SupervisedModule:
    torch.manual_seed(0)
    return zoo.create_model(name, input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, **overrides)


def batch(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(size, *INPUT_SHAPE, generator=generator), torch.randint(
        0, NUM_CLASSES, (size,), generator=generator
    )


def test_registry_finds_the_configs():
    assert {"mlp", "cnn", "gan", "dcgan"} <= set(MODELS)


def test_every_model_belongs_to_a_tested_family():
    assert sorted(SUPERVISED + ADVERSARIAL) == MODELS


def quiet_trainer(**options) -> L.Trainer:
    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **options)


@pytest.mark.parametrize("name", SUPERVISED)
def test_output_shape(name):
    model = build(name)
    assert model(batch(5)[0]).shape == (5, NUM_CLASSES)


@pytest.mark.parametrize("name", SUPERVISED)
def test_gradients_reach_every_parameter(name):
    model = build(name)
    x, y = batch()
    model.loss(model(x), y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


@pytest.mark.parametrize("name", SUPERVISED)
def test_a_few_steps_on_one_batch_drive_the_loss_down(name):
    model = build(name)
    x, y = batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = model.loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip_gives_identical_outputs(name, tmp_path):
    model = build(name)
    with torch.no_grad():  # weights a fresh build would not have
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    trainer = quiet_trainer(max_epochs=0)
    trainer.strategy.connect(model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = type(model).load_from_checkpoint(path)
    x = batch(4)[0] if name in SUPERVISED else torch.randn(4, model.latent_dim)
    model.eval(), restored.eval()
    torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
    assert restored.hparams == model.hparams


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_generator_output_shape_and_one_logit_per_image(name):
    model = build(name)
    images = model(torch.randn(5, model.latent_dim))
    assert images.shape == (5, *INPUT_SHAPE)
    assert model.discriminator(images).shape == (5, 1)


def one_training_step(model: GAN) -> L.Trainer:
    """Fit one batch (one D and one G update) without a datamodule, logger or validation."""
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=InMemoryLoader(*batch(16), batch_size=16))
    return trainer


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_one_training_step_changes_both_networks(name):
    model = build(name)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    one_training_step(model)
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f"not updated: {unchanged}"


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_checkpoint_restores_both_optimizers(name, tmp_path):
    model = build(name)
    trainer = one_training_step(model)
    path = tmp_path / "gan.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["optimizer_states"]
    assert len(saved) == 2 and all(state["state"] for state in saved)  # Adam moments present
    resumed = quiet_trainer(max_epochs=1, limit_val_batches=0)
    resumed.fit(build(name), train_dataloaders=InMemoryLoader(*batch(16), batch_size=16),
                ckpt_path=path)
    for optimizer, state in zip(resumed.optimizers, saved):
        for key, value in state["state"][0].items():
            torch.testing.assert_close(optimizer.state_dict()["state"][0][key], value)
