"""Generic tests over every conf/model/*.yaml: adding a yaml adds its tests."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.models import SupervisedModule

MODELS = zoo.list_models()
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
    assert {"mlp", "cnn"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_output_shape(name):
    model = build(name)
    assert model(batch(5)[0]).shape == (5, NUM_CLASSES)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name):
    model = build(name)
    x, y = batch()
    model.loss(model(x), y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


@pytest.mark.parametrize("name", MODELS)
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
    import lightning as L

    model = build(name)
    with torch.no_grad():  # weights a fresh build would not have
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    trainer = L.Trainer(max_epochs=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = type(model).load_from_checkpoint(path)
    x = batch(4)[0]
    model.eval(), restored.eval()
    torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
    assert restored.hparams == model.hparams
