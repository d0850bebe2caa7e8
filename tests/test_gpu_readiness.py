"""What a first GPU run depends on, checked without a GPU: precision, devices, host syncs."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import compose_config
from ddp_group import data_for
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

import zoo
from zoo.lightning_private import logger_writes_this_step
from zoo.metrics import fid
from zoo.registry import model_config
from zoo.run.callbacks import LastCheckpoint
from zoo.run.training import build_run

ZOO = str(Path(zoo.__file__).resolve().parent)
CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


def tiny_run(tmp_path: Path, model: str, *overrides: str):
    """(datamodule, task, trainer) of a few-batch CPU run of `model` on data it takes."""
    fast_fid = ["model.fid_classifier_epochs=1"] if "fid_cache_dir" in model_config(model) else []
    return build_run(
        compose_config(
            tmp_path,
            [
                f"model={model}",
                *data_for(model),
                *fast_fid,
                "trainer=cpu",
                "trainer.max_epochs=1",
                "~callbacks.model_checkpoint",
                "~callbacks.last_checkpoint",
                *overrides,
            ],
        )
    )


class OutputDtypes(Callback):
    """The dtype each kind of layer outputs during training steps."""

    def __init__(self) -> None:
        self.seen: dict[str, set[torch.dtype]] = {}
        self.in_step = False

    def on_train_batch_start(self, *args) -> None:
        self.in_step = True

    def on_train_batch_end(self, *args) -> None:
        self.in_step = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for module in pl_module.modules():
            if isinstance(module, (nn.Linear, *CONVOLUTIONS, nn.RNNBase)):
                module.register_forward_hook(self.record)

    def record(self, module: nn.Module, inputs: tuple, output) -> None:
        if not self.in_step:
            return
        output = output[0] if isinstance(output, tuple) else output
        kind = "recurrent" if isinstance(module, nn.RNNBase) else "linear/conv"
        self.seen.setdefault(kind, set()).add(output.dtype)


@pytest.mark.parametrize("model", zoo.list_models())
def test_bf16_mixed_runs_layers_in_the_promised_dtype_and_keeps_metrics_float32(tmp_path, model):
    """README: under bf16-mixed, linear and convolution layers compute in bfloat16, recurrent
    layers in float32 (autocast would give CUDA's RNNs float16), metrics and FID in float32."""
    datamodule, task, trainer = tiny_run(
        tmp_path,
        model,
        "trainer.precision=bf16-mixed",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=1",
    )
    dtypes = OutputDtypes()
    trainer.callbacks.append(dtypes)
    trainer.fit(task, datamodule=datamodule)
    assert dtypes.seen["linear/conv"] == {torch.bfloat16}, dtypes.seen
    assert dtypes.seen.get("recurrent", {torch.float32}) == {torch.float32}, dtypes.seen
    metrics = trainer.callback_metrics
    assert metrics and all(value.dtype == torch.float32 for value in metrics.values()), metrics
    if getattr(task, "scores", None):  # a GAN's FID features: float32 also inside autocast
        features = task.scores["val"].inception
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert features(torch.rand(4, *task.input_shape)).dtype == torch.float32


@pytest.fixture
def device_changes(monkeypatch) -> list[str]:
    """Every call that would change the current CUDA device, recorded instead of made."""
    calls: list[str] = []
    for name in ("set_device", "_exchange_device", "_maybe_exchange_device"):
        if hasattr(torch.cuda, name):
            monkeypatch.setattr(torch.cuda, name, lambda *a, name=name: calls.append(name) or 0)
    monkeypatch.setattr(torch._C, "_cuda_setDevice", lambda *a: calls.append("_cuda_setDevice"))
    return calls


def on_fake_gpu(task: L.LightningModule, datamodule=None) -> SimpleNamespace:
    """A stub trainer of a DDP process whose device is cuda:1 (no GPU needed to build it)."""
    strategy = SimpleNamespace(root_device=torch.device("cuda", 1), broadcast=lambda obj, src: obj)
    trainer = SimpleNamespace(strategy=strategy, datamodule=datamodule, is_global_zero=True)
    task.trainer = trainer
    return trainer


@pytest.mark.parametrize("model", zoo.list_models())
def test_setup_on_a_second_gpu_changes_no_device_and_conv_nets_go_channels_last(
    tmp_path, model, device_changes
):
    _, task, _ = tiny_run(tmp_path, model)
    on_fake_gpu(task)
    task.setup("fit")
    convolutional = any(isinstance(m, CONVOLUTIONS) for m in task.modules())
    assert task.channels_last == convolutional
    for module in task.modules():
        if isinstance(module, CONVOLUTIONS):
            assert module.weight.is_contiguous(memory_format=torch.channels_last), module
    if convolutional:
        assert task.prepare_input(torch.zeros(2, 1, 4, 4)).is_contiguous(
            memory_format=torch.channels_last
        )
    assert not device_changes
    assert model not in ("dcgan", "cnn") or task.channels_last


def test_the_fid_classifier_trains_on_the_runs_own_device_without_a_trainer(
    tmp_path, monkeypatch, device_changes
):
    datamodule, task, _ = tiny_run(tmp_path, "dcgan")
    devices = []

    def train_classifier(batches, spec, epochs, device):
        devices.append(device)
        return fid.ConvNet(spec.input_shape, spec.num_outputs, **fid.CLASSIFIER)

    monkeypatch.setattr(fid, "train_classifier", train_classifier)
    monkeypatch.setattr(L.Trainer, "__init__", lambda *a, **k: pytest.fail("a nested Trainer"))
    on_fake_gpu(task, datamodule)
    task.setup("fit")
    assert devices == [torch.device("cuda", 1)] and set(task.scores) == {"val", "test"}
    assert not device_changes


def test_ddp_processes_draw_different_gan_noise(tmp_path):
    noise = []
    for rank in (0, 1):
        _, task, _ = tiny_run(tmp_path, "gan")
        task.trainer = SimpleNamespace(global_rank=rank)
        torch.manual_seed(42)  # what seed_everything gives every process
        task.on_fit_start()
        noise.append(torch.randn(4, 2, generator=task.noise))
    assert not torch.equal(noise[0], noise[1])


SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
# One known exception, documented in the README: a tree batch's level sizes shape its slices.
SYNC_ALLOWED = {"zoo/nets/tree.py": "level sizes of the batch's trees (data-dependent shapes)"}


# At least 23 training batches in one epoch of each kind of tiny data.
ENOUGH_STEPS = {
    "data=digits": ["data.batch_size=32"],
    "data=text": ["data.steps_per_epoch=23"],
    "data=listops": ["data.batch_size=8"],
}


class SyncAudit(Callback):
    """Counts tensor->host reads made by zoo/ code in steady-state training steps on which the
    logger does not write."""

    def __init__(self, warmup: int = 3) -> None:
        self.warmup = warmup
        self.counting = False
        self.steps = 0
        self.found: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.counting = batch_idx >= self.warmup and not logger_writes_this_step(trainer)
        self.steps += self.counting

    def on_train_batch_end(self, *args) -> None:
        self.counting = False

    def wrap(self, name: str, method):
        def audited(tensor, *args, **kwargs):
            if self.counting:
                caller = sys._getframe(1).f_code.co_filename
                where = caller.removeprefix(ZOO.removesuffix("zoo"))
                if caller.startswith(ZOO) and where not in SYNC_ALLOWED:
                    self.found.append(f"Tensor.{name} from {where}:{sys._getframe(1).f_lineno}")
            return method(tensor, *args, **kwargs)

        return audited


@pytest.mark.parametrize("model", zoo.list_models())
def test_no_host_sync_from_zoo_code_in_steady_state_steps(tmp_path, model, monkeypatch):
    datamodule, task, trainer = tiny_run(
        tmp_path,
        model,
        *ENOUGH_STEPS[data_for(model)[0]],
        "+trainer.limit_train_batches=23",
        "+trainer.limit_val_batches=0",
        "+trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=5",
    )
    audit = SyncAudit()
    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, audit.wrap(name, getattr(torch.Tensor, name)))
    trainer.callbacks.append(audit)
    trainer.fit(task, datamodule=datamodule)
    assert audit.steps >= 15 and not audit.found, audit.found


def test_ctrl_c_under_ddp_saves_nothing_since_saving_is_a_collective(capsys):
    callback = LastCheckpoint()
    callback.save = lambda trainer: pytest.fail("saved from the interrupt under DDP")
    trainer = SimpleNamespace(
        state=SimpleNamespace(fn=TrainerFn.FITTING),
        world_size=2,
        is_global_zero=True,
        global_step=7,
    )
    callback.on_exception(trainer, None, KeyboardInterrupt())
    assert "interrupted at step 7: not saved (DDP)" in capsys.readouterr().out
