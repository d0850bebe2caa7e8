"""The fast path: in-memory loader (one process and DDP shards), compile option, DDP on CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import lightning as L
import pytest
import torch
from conftest import REPO
from omegaconf import OmegaConf
from test_models import batch, build
from torch.utils.data import DataLoader

import zoo
from zoo.data import DigitsDataModule, InMemoryLoader
from zoo.lightning_private import is_compiled
from zoo.registry import model_config
from zoo.run.training import build_run, train


def epoch_indices(loader: InMemoryLoader) -> list[int]:
    return torch.cat([index for (index,) in loader]).tolist()


def test_in_memory_loader_reshuffles_every_epoch():
    loader = InMemoryLoader(torch.arange(100), batch_size=32, shuffle=True)
    first, second = epoch_indices(loader), epoch_indices(loader)
    assert sorted(first) == sorted(second) == list(range(100)) and first != second
    assert len(loader) == 4 and epoch_indices(
        InMemoryLoader(torch.arange(10), batch_size=4)
    ) == list(range(10))


@pytest.mark.parametrize("shuffle", [True, False])
def test_ddp_shards_split_one_order_into_equal_disjoint_parts(shuffle):
    ranks = [
        InMemoryLoader(
            torch.arange(101), batch_size=16, shuffle=shuffle, rank=r, world_size=2, seed=3
        )
        for r in (0, 1)
    ]
    for epoch in range(2):
        parts = [epoch_indices(loader) for loader in ranks]
        assert (
            len(parts[0]) == len(parts[1]) == 50 == 16 * (len(ranks[0]) - 1) + 2
        )  # same step count
        assert not set(parts[0]) & set(parts[1])
        if epoch == 0:
            first_epoch = parts
    assert (parts != first_epoch) == shuffle  # a fresh shared permutation each epoch


def test_auto_loader_serves_small_data_from_memory_and_large_data_with_a_dataloader():
    small = DigitsDataModule(batch_size=64)
    large = DigitsDataModule(batch_size=64, memory_limit_mb=0)
    assert isinstance(small.train_dataloader(), InMemoryLoader)
    assert isinstance(large.train_dataloader(), DataLoader)
    forced = DigitsDataModule(
        batch_size=64, loader="dataloader", num_workers=2, persistent_workers=True
    )
    assert (
        forced.train_dataloader().num_workers == 2 and forced.train_dataloader().persistent_workers
    )


@pytest.mark.parametrize("name", zoo.list_models())
def test_compile_option_compiles_every_network_in_place_keeping_parameter_names(name):
    assert "compile" in model_config(name), f"conf/model/{name}.yaml needs `compile: false`"
    model = build(name, compile=True)
    names = list(model.state_dict())
    model.trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    model.setup("fit")
    assert not any(is_compiled(net) for net in model.networks().values())  # not for the summary
    model.on_train_start()
    assert all(is_compiled(net) for net in model.networks().values())
    assert list(model.state_dict()) == names and not model.channels_last  # CPU: no channels-last


def test_a_network_compiled_on_a_cpu_drops_out_as_eager_does():
    """compile=True on a CPU: dropout draws ATen's random numbers (compile_options), so a
    compiled training forward pass gives the eager one's output for the same seed."""
    eager, compiled = build("mlp", dropout=0.5), build("mlp", compile=True, dropout=0.5)
    compiled.compile_in_place()
    x, _ = batch("image", 8)
    outputs = []
    for seed, task in [(3, eager), (3, compiled), (4, eager)]:
        torch.manual_seed(seed)
        outputs.append(task.train().net(x))
    assert is_compiled(compiled.net)
    assert torch.equal(outputs[0], outputs[1])  # the same dropout masks
    assert not torch.allclose(outputs[0], outputs[2])  # dropout is on: another seed, others
    torch.compiler.reset()


class TracedCalls(torch.nn.Module):
    """Records, per call, whether torch.compile traced it (a compiled call) or not (eager)."""

    def __init__(self) -> None:
        super().__init__()
        self.traced: list[bool] = []
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.traced.append(torch.compiler.is_compiling())
        return self.linear(x)


@pytest.mark.parametrize("compile", [True, False])
def test_compiled_tasks_validate_and_test_eagerly(compile):
    """compile=True: validation and test run eagerly (no graphs of their own for a few batches),
    training compiled again after them; compile=False leaves a user's own compiled code alone."""
    task = build("mlp", compile=compile)
    net = torch.compile(TracedCalls(), backend="eager")  # dynamo's tracing, without inductor
    x = torch.randn(3, 4)
    for start, end in [
        (task.on_validation_start, lambda: task.set_compile_stance(False)),
        (task.on_test_start, task.on_test_end),
    ]:
        net(x)
        start()
        net(x)
        end()
        net(x)
    # Before, during and after validation, then the same around test.
    assert net.traced == [True, not compile, True] * 2
    torch.compiler.reset()


def test_channels_last_steps_match_contiguous_ones():
    """What CUDA runs for conv nets (channels-last weights and inputs) gives the same loss and
    gradients as the contiguous layout; checked on the CPU, where CI can run it."""
    torch.manual_seed(0)
    plain = zoo.create_model("cnn", (1, 8, 8), 10)
    fast = zoo.create_model("cnn", (1, 8, 8), 10)
    fast.load_state_dict(plain.state_dict())
    fast.channels_last = True
    fast.to(memory_format=torch.channels_last)
    batch = (torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    losses = [model.eval()._step(batch)[0] for model in (plain, fast)]  # eval: no dropout masks
    for loss in losses:
        loss.backward()
    assert losses[1].item() == pytest.approx(losses[0].item(), rel=1e-5)
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


@pytest.mark.parametrize("model", ["cnn", "lstm"])
def test_gpu_trainer_settings_train_on_the_cpu(make_config, model):
    """trainer=gpu's bf16-mixed precision and benchmark flag, on the CPU (autocast to bfloat16)."""
    metrics = train(
        make_config(
            f"model={model}",
            "trainer=gpu",
            "trainer.accelerator=cpu",
            "+trainer.limit_train_batches=5",
            "trainer.max_epochs=2",
        )
    )
    assert all(torch.isfinite(torch.tensor(value)) for value in metrics.values())
    assert metrics["test/acc"] > 0.2  # ten steps of bf16 training beat chance (0.1)


def test_gpu_and_ddp_trainer_configs(make_config):
    gpu = make_config("trainer=gpu").trainer
    assert (gpu.accelerator, gpu.precision, gpu.benchmark) == ("gpu", "bf16-mixed", True)
    ddp = OmegaConf.to_container(make_config("trainer=ddp").trainer)
    assert ddp["strategy"] == "ddp" and ddp["precision"] == "bf16-mixed"


def run_ddp_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    """train.py in its own process group, so a timeout also ends the DDP worker it spawned."""
    command = [sys.executable, str(REPO / "train.py"), *args, f"paths.log_dir={cwd / 'logs'}"]
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=600)  # ~15 s on 2 idle cores
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.slow
def test_ddp_trains_with_two_cpu_processes(tmp_path):
    result = run_ddp_cli(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.benchmark=false",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=4",
        "+trainer.limit_val_batches=2",
        "model=mlp",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("test/acc") == 1  # only rank 0 prints the summary
    run_dir = next((tmp_path / "logs").glob("mlp-digits/*"))
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr  # the second process
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert "Starting with 2 processes" in result.stdout + result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: Lightning's setting stays")
def test_cpu_runs_without_a_gpu_skip_nvml_in_every_optimizer_step(make_config, monkeypatch):
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # what `import lightning` sets
    build_run(make_config("model=mlp"))
    assert "PYTORCH_NVML_BASED_CUDA_CHECK" not in os.environ
    calls = []
    monkeypatch.setattr(torch.cuda, "_raw_device_count_nvml", lambda: calls.append(1) or -1)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    assert not calls  # torch's per-step CUDA check no longer loads NVML


def test_a_compiled_fit_runs_a_short_last_batch_eagerly_then_leaves_torchs_default():
    """compile=True: the first training step compiles; after it, a batch of another shape (an
    epoch's short last batch) runs eagerly rather than compiling a graph of its own, until the
    fit ends."""
    task = build("mlp", compile=True)
    compiled_calls: list[int] = []

    def counting_backend(graph: torch.fx.GraphModule, inputs: list) -> object:
        def run(*args: torch.Tensor) -> object:
            compiled_calls.append(len(args[-1]))
            return graph(*args)

        return run

    net = torch.compile(torch.nn.Linear(4, 2), backend=counting_backend)
    try:
        net(torch.randn(8, 4))  # the first step compiles
        task.on_train_batch_end(None, None, 0)
        for size in (8, 3, 8):  # full, short last, full
            net(torch.randn(size, 4))
        task.on_validation_start()
        net(torch.randn(8, 4))
        task.set_compile_stance(False)  # as on_validation_end does
        net(torch.randn(3, 4))
        task.on_train_end()
        net(torch.randn(3, 4))  # after the fit, torch's default: compiles for it
    finally:
        torch.compiler.set_stance("default")
        torch.compiler.reset()
    assert compiled_calls == [8, 8, 8, 3]
