"""Every way into a checkpoint is safe: plain data only (also when the environment asks torch for
full unpickling), task classes only from the zoo's fixed list, configs that cannot make Hydra
call or import code; anything else refused in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import REPO
from test_faults import Payload

import zoo
from zoo.cli import sample
from zoo.errors import CheckpointError
from zoo.loading import read_checkpoint
from zoo.tasks import (
    TASKS,
    Adversarial,
    LanguageModel,
    Reconstruction,
    Supervised,
    Task,
    VariationalReconstruction,
)

UNSAFE_LOAD = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"  # =1: torch unpickles anything unless told not to
MODULE = "zoo_test_planted"  # a module that leaves a marker when imported


def save(model: Task, path: Path) -> Path:
    trainer = L.Trainer(max_epochs=0, logger=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Fresh checkpoints of a Supervised (mlp) and an Adversarial (gan) task."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "mlp": save(zoo.create_model("mlp", (1, 8, 8), 10), folder / "mlp.ckpt"),
        "gan": save(zoo.create_model("gan", (1, 8, 8), 10), folder / "gan.ckpt"),
    }


def altered(source: Path, destination: Path, change) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, destination)
    return destination


@pytest.fixture
def planted_module(tmp_path, monkeypatch) -> Path:
    """An importable module that touches a marker file when imported; the marker's path."""
    marker = tmp_path / "imported"
    (tmp_path / f"{MODULE}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
        "import torch\nclass Net(torch.nn.Module):\n    pass\nTask = Net\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    return marker


def test_the_task_list_is_the_zoos_own_classes():
    assert set(TASKS.values()) == {
        Supervised,
        LanguageModel,
        Adversarial,
        Reconstruction,
        VariationalReconstruction,
    }
    assert all(name.startswith("zoo.tasks.") for name in TASKS)


@pytest.mark.parametrize("named", ["os.system", f"{MODULE}.Task", "zoo.tasks.base.Task", 42, None])
def test_a_checkpoint_naming_another_class_is_refused(checkpoints, planted_module, tmp_path, named):
    def rename(checkpoint: dict) -> None:
        checkpoint["zoo_class"] = named

    path = altered(checkpoints["mlp"], tmp_path / "renamed.ckpt", rename)
    with pytest.raises(CheckpointError, match=r"is not a zoo checkpoint") as raised:
        zoo.load(path)
    assert "\n" not in str(raised.value)
    with pytest.raises(CheckpointError, match=r"is not a zoo checkpoint"):
        Supervised.load_from_checkpoint(path)
    assert sample.main([f"ckpt_path={path}"]) == 2
    assert not planted_module.exists() and MODULE not in sys.modules


def test_a_task_class_loads_only_its_own_checkpoints(checkpoints):
    with pytest.raises(CheckpointError, match=r"holds a task of class Adversarial, not Supervised"):
        Supervised.load_from_checkpoint(checkpoints["gan"])
    assert isinstance(Adversarial.load_from_checkpoint(checkpoints["gan"]), Adversarial)
    assert isinstance(Supervised.load_from_checkpoint(checkpoints["mlp"]), Supervised)


class MyTask(Supervised):
    """A task of the user's own: its code names it, so its own checkpoints load through it."""


def test_a_users_own_task_loads_through_its_class_not_by_name(tmp_path):
    net = {"_target_": "zoo.nets.FeedForward", "hidden_sizes": [16]}
    path = save(MyTask(net, (1, 8, 8), 10), tmp_path / "mine.ckpt")
    assert type(MyTask.load_from_checkpoint(path)) is MyTask
    with pytest.raises(CheckpointError, match=r"names 'test_loading.MyTask' as its task, not one"):
        zoo.load(path)


@pytest.mark.parametrize(
    ("field", "where"),
    [
        ("hidden_sizes", "model.hidden_sizes names a class"),  # Hydra would call it
        ("_target_", "model 'zoo_test_planted.Net' is not a class the zoo has imported"),
    ],
)
def test_a_checkpoints_network_config_cannot_call_or_import_code(
    checkpoints, planted_module, tmp_path, field, where
):
    touched = tmp_path / "touched"

    def plant(checkpoint: dict) -> None:
        net = checkpoint["hyper_parameters"]["net"]
        if field == "_target_":
            net["_target_"] = f"{MODULE}.Net"
        else:
            net[field] = {"_target_": "pathlib.Path.touch", "_args_": [str(touched)]}

    path = altered(checkpoints["mlp"], tmp_path / "planted.ckpt", plant)
    for load in (zoo.load, Supervised.load_from_checkpoint):
        with pytest.raises(CheckpointError, match=f"^refusing to load {path}: {where}"):
            load(path)
    assert not touched.exists() and not planted_module.exists()


def test_an_optimizer_config_cannot_call_code(checkpoints, tmp_path):
    touched = tmp_path / "touched"

    def plant(checkpoint: dict) -> None:
        checkpoint["hyper_parameters"]["optimizer"] = {
            "_target_": "torch.optim.Adam",
            "betas": {"_target_": "pathlib.Path.touch", "_args_": [str(touched)]},
        }

    path = altered(checkpoints["gan"], tmp_path / "planted.ckpt", plant)
    with pytest.raises(CheckpointError, match="optimizer.betas names a class"):
        zoo.load(path)
    assert not touched.exists()


@pytest.fixture
def payload(checkpoints, tmp_path) -> tuple[Path, Path]:
    """A GAN checkpoint carrying a pickle payload; the marker it would write."""
    marker = tmp_path / "payload-ran"

    def plant(checkpoint: dict) -> None:
        checkpoint["payload"] = Payload(marker)

    return altered(checkpoints["gan"], tmp_path / "evil.ckpt", plant), marker


def test_a_payload_never_runs_even_when_torch_is_told_to_unpickle_anything(payload, monkeypatch):
    evil, marker = payload
    monkeypatch.setenv(UNSAFE_LOAD, "1")
    loaders = [zoo.load, read_checkpoint, Adversarial.load_from_checkpoint]
    loaders += [Supervised.load_from_checkpoint, sample.load]
    for load in loaders:
        with pytest.raises(CheckpointError, match="refusing to load .*could run code"):
            load(evil)
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("script", ["sample.py", "train.py"])
def test_cli_refuses_a_payload_with_the_unsafe_environment(payload, tmp_path, script):
    evil, marker = payload
    arguments = [f"ckpt_path={evil}"]
    if script == "train.py":
        arguments += ["model=gan", f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_epochs=1"]
    result = subprocess.run(
        [sys.executable, str(REPO / script), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, UNSAFE_LOAD: "1"},
    )
    assert result.returncode == 2, result.stderr
    assert re.search(
        rf"^error: refusing to load {evil}: .*could run code", result.stderr, re.MULTILINE
    )
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert set(tmp_path.rglob("*.ckpt")) == {evil}


def test_torch_load_is_called_in_one_place():
    """Every checkpoint the zoo reads goes through zoo.run.checkpoints.read_checkpoint (or through
    Lightning, given weights_only=True, after read_checkpoint checked the file)."""
    sources = [*(REPO / "zoo").rglob("*.py"), *REPO.glob("*.py")]
    calls = {
        path.relative_to(REPO).as_posix() for path in sources if "torch.load(" in path.read_text()
    }
    assert calls == {"zoo/checkpoints.py"}
