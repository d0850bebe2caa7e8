"""Generic tests over every conf/model/*.yaml, on every kind of input its network accepts:
adding a yaml adds its tests."""

from __future__ import annotations

import subprocess
import sys

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.data import DataSpec, InMemoryLoader
from zoo.data.listops import VOCABULARY, as_trees, evaluate, generate
from zoo.registry import accepted_inputs, build_model, model_config
from zoo.tasks import TASK_FOR_KIND, Adversarial, Supervised, Task

MODELS = zoo.list_models()
NUM_CLASSES = 10
TREES = generate(32, seed=0, max_depth=4, max_args=3, max_length=40)  # real ListOps trees
NODES = max(2 * sum(t not in "()" for t in text.split()) - 1 for text in TREES)
SPECS = {
    "image": DataSpec((1, 8, 8), NUM_CLASSES),
    "sequence": DataSpec((6, 3), NUM_CLASSES),
    "vector": DataSpec((12,), NUM_CLASSES),
    "tokens": DataSpec(
        (12,), NUM_CLASSES, "language_model", "tokens", NUM_CLASSES, True, "abcdefghij"
    ),
    "tree": DataSpec((NODES, 4), NUM_CLASSES, "classification", "tree", len(VOCABULARY)),
}
ACCEPTS = {name: accepted_inputs(model_config(name)) or tuple(SPECS) for name in MODELS}


def build(name: str, inputs: str | None = None, **overrides) -> Task:
    torch.manual_seed(0)
    return build_model(
        model_config(name, **overrides), SPECS[inputs or ACCEPTS[name][0]], name=name
    )


TASKS = {name: type(build(name)) for name in MODELS}
# Plain networks under the task their data asks for (a yaml naming its own task has its tests).
TRAINED_ON_DATA = [name for name in MODELS if TASKS[name] in TASK_FOR_KIND.values()]
ADVERSARIAL = [name for name in MODELS if TASKS[name] is Adversarial]
# (model, kind of input) for every kind each model's yaml says it accepts.
PAIRS = [(name, inputs) for name in TRAINED_ON_DATA for inputs in ACCEPTS[name] if inputs in SPECS]


def batch(inputs: str = "image", size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (one per sample, or one per position for tokens)."""
    generator = torch.Generator().manual_seed(1)
    spec = SPECS[inputs]
    if inputs == "tree":
        return as_trees(TREES[:size], NODES), torch.tensor(
            [evaluate(t.split()) for t in TREES[:size]]
        )
    if inputs == "tokens":
        ids = torch.randint(0, NUM_CLASSES, (size, *spec.input_shape), generator=generator)
        return ids, ids.clone()  # at every position its own token: learnable by causal nets
    return (
        torch.randn(size, *spec.input_shape, generator=generator),
        torch.randint(0, NUM_CLASSES, (size,), generator=generator),
    )


def output_shape(inputs: str, size: int) -> tuple[int, ...]:
    spec = SPECS[inputs]
    return (size, spec.input_shape[0], NUM_CLASSES) if spec.per_position else (size, NUM_CLASSES)


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Over classes, for one output per sample or one per position."""
    return F.cross_entropy(output.flatten(0, -2), target.flatten())


def test_registry_finds_the_configs():
    assert {"mlp", "cnn", "rnn", "lstm", "gru", "gan", "dcgan"} <= set(MODELS)


def test_every_model_declares_inputs_the_tests_know():
    for name in MODELS:
        assert accepted_inputs(model_config(name)), f"{name}: its class declares no `accepts`"
        assert set(ACCEPTS[name]) <= set(SPECS), name


@pytest.mark.parametrize(("name", "inputs"), PAIRS)
def test_the_network_is_a_plain_module_that_trains_in_a_raw_loop(name, inputs):
    """The task's `.net` alone: no Lightning, an Adam loop drives one batch's loss down."""
    net = build(name, inputs).net
    assert isinstance(net, nn.Module) and not isinstance(net, L.LightningModule)
    x, y = batch(inputs)
    assert net(x[:5]).shape == output_shape(inputs, 5)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):  # a single linear layer (model=neuron) needs more than 30 steps
        loss = cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize(("name", "inputs"), PAIRS)
def test_gradients_reach_every_parameter(name, inputs):
    model = build(name, inputs)
    x, y = batch(inputs)
    model.loss(model(x), y).backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"no gradient reached {missing}"


@pytest.mark.parametrize("name", [n for n in TRAINED_ON_DATA if "image" in ACCEPTS[n]])
def test_regression_gives_one_value_per_output(name):
    model = zoo.create_model(name, SPECS["image"].input_shape, 2, kind="regression")
    x = batch()[0][:4]
    assert model(x).shape == (4, 2)
    assert model.loss(model(x), torch.zeros(4, 2)) > 0


@pytest.mark.parametrize("name", MODELS)
def test_data_it_does_not_accept_is_refused_in_one_line(name):
    refused = [kind for kind in SPECS if kind not in ACCEPTS[name]]
    for inputs in refused:
        with pytest.raises(ValueError, match=f"model={name} .* takes .*this data gives") as raised:
            build_model(model_config(name), SPECS[inputs], name=name)
        assert "\n" not in str(raised.value)


def quiet_trainer(**options) -> L.Trainer:
    return L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip_with_zoo_load_gives_identical_outputs(name, tmp_path):
    model = build(name)
    with torch.no_grad():  # weights a fresh build would not have
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    trainer = quiet_trainer(max_epochs=0)
    trainer.strategy.connect(model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = zoo.load(path)
    assert type(restored) is type(model)
    x = torch.randn(4, model.latent_dim) if name in ADVERSARIAL else batch(ACCEPTS[name][0])[0][:4]
    model.eval(), restored.eval()
    torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
    assert restored.hparams == model.hparams


def test_a_task_takes_any_plain_network():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, NUM_CLASSES))
    task = Supervised(net, input_shape=(1, 8, 8), num_outputs=NUM_CLASSES)
    assert task.net is net and task(batch()[0]).shape == (32, NUM_CLASSES)


def test_a_checkpoint_that_names_code_outside_the_nets_is_refused(tmp_path):
    model = build("mlp")
    trainer = quiet_trainer(max_epochs=0)
    trainer.strategy.connect(model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["net"]["_target_"] = "collections.OrderedDict"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="'collections.OrderedDict' is not a Module"):
        zoo.load(path)
    checkpoint["zoo_class"] = "os.system"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="not a zoo checkpoint"):
        zoo.load(path)


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_generator_output_shape_and_one_logit_per_image(name):
    model = build(name)
    images = model(torch.randn(5, model.latent_dim))
    assert images.shape == (5, *SPECS["image"].input_shape)
    assert model.discriminator(images).shape == (5, 1)
    assert isinstance(model.generator, nn.Module) and not isinstance(
        model.generator, L.LightningModule
    )


def one_training_step(model: Adversarial) -> L.Trainer:
    """Fit one batch (one D and one G update) without a datamodule, logger or validation."""
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=InMemoryLoader(*batch(size=16), batch_size=16))
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
    resumed.fit(
        build(name),
        train_dataloaders=InMemoryLoader(*batch(size=16), batch_size=16),
        ckpt_path=path,
    )
    for optimizer, state in zip(resumed.optimizers, saved):
        for key, value in state["state"][0].items():
            torch.testing.assert_close(optimizer.state_dict()["state"][0][key], value)


def test_the_networks_import_without_lightning_or_hydra():
    code = "import sys, zoo.nets; print(sorted({'lightning', 'hydra'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
