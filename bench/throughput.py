"""Training throughput of the zoo (train.py's code path) against a raw PyTorch loop, side by side.

    python bench/throughput.py              # CPU (and the GPU when present); a few minutes
    python bench/throughput.py --quick      # one repeat, fewer steps: a smoke run

For each family (mlp, cnn, lstm, vit, gpt, treelstm, gan, dcgan, ae, vae) and each data set it
can take (the embedded digits, MNIST-shaped synthetic tensors 60000x1x28x28, data=text's
128-character windows of Python's sources, a "sample" being one window, and data=listops's
generated trees or token sequences) it measures steady-state training samples/s (a) through
`zoo.run.training.build_run` + `trainer.fit` with train.py's own config (logger,
checkpoints, progress bar) and (b) through a plain loop over the same model class, data loader,
batch size, optimizer and precision. Steps in the first epoch (digits) or the first 10 steps
(MNIST-shaped) are warm-up; the time between the ends of two training steps in one epoch is
counted, so validation and checkpointing between epochs are not. Paths alternate, best of the
repeats is kept (the machine may be shared). Then the in-memory loader against torch DataLoaders
over the same 60000x1x28x28 tensors. Prints a markdown report to paste into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's zoo

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.data import InMemoryLoader, TensorDataModule
from zoo.data.text import RandomWindows, TextDataModule, windows
from zoo.nets.autoencoder import gaussian_kl, reparameterise
from zoo.registry import CONFIG_DIR, accepted_inputs, build_model
from zoo.run.resolvers import register
from zoo.run.training import build_run
from zoo.tasks import Adversarial, Reconstruction
from zoo.tasks.base import uses_channels_last

register()  # conf/'s resolvers, as `zoo train` registers them

FID_CACHE_DIR = tempfile.TemporaryDirectory(prefix="zoo-bench-fid-")  # removed at exit
FID_CACHE = FID_CACHE_DIR.name


class SyntheticImages(TensorDataModule):
    """MNIST-shaped random images and labels (60000 train by default), float32 on the CPU."""

    name = "synthetic-mnist"

    def __init__(
        self,
        train_size: int = 60000,
        val_size: int = 512,
        shape: tuple = (1, 28, 28),
        **loader_args: Any,
    ) -> None:
        super().__init__(**loader_args)
        self.sizes = {"train": train_size, "val": val_size, "test": val_size}
        self.shape = tuple(shape)

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        generator = torch.Generator().manual_seed(0)
        return {
            split: (
                torch.randn(n, *self.shape, generator=generator),
                torch.randint(0, 10, (n,), generator=generator),
            )
            for split, n in self.sizes.items()
        }


# The data set each --data name trains on (mnist-shaped: digits' config, then SyntheticImages).
DATA = {"digits": "digits", "mnist-shaped": "digits", "text": "text", "listops": "listops"}
INPUTS = {"digits": "image", "mnist-shaped": "image", "text": "tokens", "listops": "tree"}


def make_config(
    family: str, data: str, device: str, output_dir: Path, overrides: tuple = ()
) -> DictConfig:
    """train.py's config for this run: real callbacks, logger and progress bar."""
    trainer = "gpu" if device == "cuda" else "cpu"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        config = compose(
            "config",
            overrides=[f"model={family}", f"trainer={trainer}", f"data={DATA[data]}", *overrides],
        )
    with open_dict(config):
        config.paths.output_dir = str(output_dir)
        config.paths.data_dir = str(output_dir / "data")
        if (
            "fid_classifier_epochs" in config.model
        ):  # GANs: one FID classifier per data set, trained once
            config.model.fid_classifier_epochs = 1
            config.model.fid_cache_dir = FID_CACHE
        if data == "mnist-shaped":
            config.data = OmegaConf.create(
                {"_target_": f"{__name__}.SyntheticImages", "batch_size": 128}
            )
    return config


class StepClock:
    """Counts samples and seconds between the ends of training steps within one epoch."""

    def __init__(self, device: str, warmup_steps: int, skip_epochs: int) -> None:
        self.device, self.warmup_steps, self.skip_epochs = device, warmup_steps, skip_epochs
        self.seconds, self.samples, self.pending, self.last = 0.0, 0, 0, None

    def start_epoch(self) -> None:
        self.last = None

    def step_end(self, epoch: int, step: int, last_in_epoch: bool, batch_size: int) -> None:
        """Called after every optimizer step; synchronises CUDA only at window edges."""
        counted = epoch >= self.skip_epochs and step >= self.warmup_steps
        if not counted:
            return
        if self.last is None or last_in_epoch:
            if self.device == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            if self.last is not None:
                self.seconds += now - self.last
                self.samples += self.pending + batch_size
            self.last, self.pending = now, 0
        else:
            self.pending += batch_size

    @property
    def throughput(self) -> float:
        return self.samples / self.seconds if self.seconds else float("nan")


class ClockCallback(L.Callback):
    """StepClock for the Lightning path."""

    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.start_epoch()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        last = batch_idx == trainer.num_training_batches - 1
        self.clock.step_end(trainer.current_epoch, batch_idx, last, len(batch[0]))


def run_lightning(config: DictConfig, clock: StepClock, epochs: int, steps: int | None) -> float:
    """(a): build_run + trainer.fit exactly as train.py does; returns fit seconds."""
    with open_dict(config):
        config.trainer.max_epochs = epochs
        if steps:
            config.trainer.limit_train_batches = steps
    datamodule, model, trainer = build_run(config)
    trainer.callbacks.append(ClockCallback(clock))
    start = time.perf_counter()
    with (
        open(os.devnull, "w") as sink,
        contextlib.redirect_stderr(sink),
        contextlib.redirect_stdout(sink),
    ):
        trainer.fit(model, datamodule=datamodule)
    return time.perf_counter() - start


def run_raw(
    config: DictConfig, clock: StepClock, epochs: int, steps: int | None, device: str
) -> float:
    """(b): the same model, loader, batch size, optimizer and precision in a plain loop,
    with a validation pass per epoch like the Lightning run; returns seconds."""
    # A plain PyTorch script never imports Lightning, which sets this; with it, each Adam step
    # tries to load NVML on a machine without a GPU (zoo.run.training.drop_nvml_check_without_gpu).
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    L.seed_everything(config.seed, verbose=False)
    datamodule = instantiate(config.data, _convert_="all")
    datamodule.setup("fit")
    task = build_model(config.model, datamodule.spec, OmegaConf.to_container(config.optimizer))
    target = torch.device(device)
    torch.backends.cudnn.benchmark = bool(config.trainer.get("benchmark"))
    task.to(target)  # the plain networks (and a GAN's data range) on the device
    networks = task.networks()
    channels_last = uses_channels_last(task, torch.device(device))
    if channels_last:
        task.to(memory_format=torch.channels_last)
    if config.model.get("compile"):
        for net in networks.values():
            net.compile()
    gan = isinstance(task, Adversarial)
    optimizers = [
        instantiate(optimizer_config, params=networks[name].parameters())
        for name, optimizer_config in task.optimizer_configs().items()
    ]
    autocast = torch.autocast(
        device, dtype=torch.bfloat16, enabled=config.trainer.precision == "bf16-mixed"
    )
    if isinstance(datamodule, TextDataModule):  # random training windows, every val window
        ids = datamodule.ids["train"].to(target)
        loader = RandomWindows(
            ids, datamodule.block_size, datamodule.batch_size, datamodule.steps_per_epoch
        )
        val = windows(datamodule.ids["val"], datamodule.block_size)
    else:
        train_x, train_y = (t.to(target) for t in datamodule.splits["train"])
        loader = InMemoryLoader(train_x, train_y, batch_size=datamodule.batch_size, shuffle=True)
        val = datamodule.splits["val"]
    val_loader = InMemoryLoader(*(t.to(target) for t in val), batch_size=datamodule.batch_size)
    n_steps = min(len(loader), steps or len(loader))
    start = time.perf_counter()
    for epoch in range(epochs):
        task.train()
        clock.start_epoch()
        for step, (x, y) in enumerate(loader):
            if step == n_steps:
                break
            x, y = datamodule.on_after_batch_transfer((x, y), 0)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if gan:
                with autocast:
                    raw_gan_step(task.generator, task.discriminator, optimizers, x, task.latent_dim)
                clock.step_end(epoch, step, step == n_steps - 1, len(x))
                continue
            with autocast:
                loss = raw_loss(task, x, y)
            optimizers[0].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[0].step()
            clock.step_end(epoch, step, step == n_steps - 1, len(x))
        task.eval()
        if gan:  # zoo's GAN validates with a FID score; not comparable, not timed
            continue
        with torch.no_grad(), autocast:
            for x, y in val_loader:
                x, y = datamodule.on_after_batch_transfer((x, y), 0)
                raw_loss(task, x, y, noise=0.0).item()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def raw_loss(task: nn.Module, x: Tensor, y: Tensor, noise: float | None = None) -> Tensor:
    """Cross-entropy on the task's net; for an autoencoder the reconstruction loss as zoo's
    Reconstruction computes it (dropped input pixels, squared error summed per sample, and for
    a VAE the KL term), written out on the plain networks."""
    if not isinstance(task, Reconstruction):
        return F.cross_entropy(task.net(x).flatten(0, -2), y.flatten())
    noise = task.hparams.noise if noise is None else noise
    inputs = x * (torch.rand_like(x) >= noise) if noise > 0 else x
    if not task.variational:
        return (task.net(inputs) - x).square().flatten(1).sum(1).mean()
    mean, log_var = task.net.encoder(inputs)
    recon = (task.net.decoder(reparameterise(mean, log_var)) - x).square().flatten(1).sum(1).mean()
    return recon + task.hparams.beta * gaussian_kl(mean, log_var).mean()


def raw_gan_step(
    generator: nn.Module, discriminator: nn.Module, optimizers: list, real: Tensor, latent_dim: int
) -> None:
    """One non-saturating GAN step as zoo's GAN does it: D on real and G(z).detach(), then G
    through a frozen D (what Lightning's toggle_optimizer does)."""
    optimizer_g, optimizer_d = optimizers
    fake = torch.tanh(generator(torch.randn(len(real), latent_dim, device=real.device)))
    logits_real, logits_fake = discriminator(real), discriminator(fake.detach())
    d_loss = F.binary_cross_entropy_with_logits(
        logits_real, torch.ones_like(logits_real)
    ) + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    optimizer_d.zero_grad(set_to_none=True)
    d_loss.backward()
    optimizer_d.step()
    discriminator.requires_grad_(False)
    logits = discriminator(fake)
    g_loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    optimizer_g.zero_grad(set_to_none=True)
    g_loss.backward()
    optimizer_g.step()
    discriminator.requires_grad_(True)


def compare(
    family: str,
    data: str,
    device: str,
    repeats: int,
    quick: bool,
    full_epochs: bool = False,
    overrides: tuple = (),
) -> dict[str, Any]:
    """Best-of-`repeats` samples/s of both paths, alternating, in this process.

    `full_epochs`: two whole epochs, the second one counted (digits always works this way)."""
    if data == "digits":
        epochs, steps, warmup, skip = (4 if quick else 15), None, 0, 1
    elif data == "text":  # epochs of 50 steps of 32 windows of 128 characters
        epochs, steps, warmup, skip = (2 if quick else 3), None, 0, 1
    elif full_epochs:
        epochs, steps, warmup, skip = 2, None, 0, 1
    else:
        epochs, steps, warmup, skip = 1, (25 if quick else 150), 10, 0
    best = {"lightning": 0.0, "raw": 0.0}
    seconds = {"lightning": float("inf"), "raw": float("inf")}
    for _ in range(repeats):
        for path in ("lightning", "raw"):
            with tempfile.TemporaryDirectory() as folder:
                config = make_config(family, data, device, Path(folder), overrides)
                clock = StepClock(device, warmup, skip)
                if path == "lightning":
                    wall = run_lightning(config, clock, epochs, steps)
                else:
                    wall = run_raw(config, clock, epochs, steps, device)
            best[path] = max(best[path], clock.throughput)
            seconds[path] = min(seconds[path], wall)
    return {
        "family": family,
        "data": data,
        "device": device,
        "epochs": epochs,
        "steps": steps,
        "batch": {"digits": 64, "text": 32, "listops": 64}.get(data, 128),
        **{f"{p}_sps": v for p, v in best.items()},
        **{f"{p}_s": v for p, v in seconds.items()},
        "ratio": best["lightning"] / best["raw"],
    }


def loader_epoch_seconds(loader: Any, device: str) -> float:
    """Seconds to draw every batch of one epoch onto `device` (the first batch excluded)."""
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for x, y in iterator:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare_loaders(device: str) -> list[tuple[str, float]]:
    """Samples/s of one shuffled epoch of 60000x1x28x28 float tensors, batch 128."""
    images, labels = torch.randn(60000, 1, 28, 28), torch.randint(0, 10, (60000,))
    on_device = (images.to(device), labels.to(device))
    pin = device == "cuda"
    loaders = {
        "InMemoryLoader (zoo, data.loader=auto)": InMemoryLoader(
            *on_device, batch_size=128, shuffle=True
        ),
        "DataLoader, num_workers=0": DataLoader(
            TensorDataset(images, labels), batch_size=128, shuffle=True, pin_memory=pin
        ),
        "DataLoader, num_workers=2, persistent": DataLoader(
            TensorDataset(images, labels),
            batch_size=128,
            shuffle=True,
            num_workers=2,
            persistent_workers=True,
            pin_memory=pin,
        ),
    }
    results = []
    for name, loader in loaders.items():
        loader_epoch_seconds(loader, device)  # warm-up epoch (starts the workers)
        best = min(loader_epoch_seconds(loader, device) for _ in range(2))
        results.append((name, (60000 - 128) / best))
    return results


def versions() -> str:
    import lightning
    import torchvision

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return (
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
        f"- machine: {cpu}, {os.cpu_count()} CPU cores visible, "
        f"torch threads {torch.get_num_threads()}; "
        f"GPU: {gpu}\n- python {platform.python_version()}, torch {torch.__version__}, lightning "
        f"{lightning.__version__}, torchvision {torchvision.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, fewer steps")
    parser.add_argument("--families", default="mlp,cnn,lstm,vit,gpt,treelstm,gan,dcgan,ae,vae")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per path")
    parser.add_argument("--data", default="digits,mnist-shaped,text,listops")
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)  # model summaries, tips
    devices = args.devices.split(",")
    print(versions())
    print(
        "\n| device | family | data | batch | measured | zoo (Lightning) samples/s "
        "| raw loop samples/s | ratio | zoo fit s | raw s |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    for device in devices:
        for family in args.families.split(","):
            if family not in zoo.list_models():
                raise SystemExit(
                    f"error: unknown family {family!r}; registered: {', '.join(zoo.list_models())}"
                )
            for data in args.data.split(","):
                with tempfile.TemporaryDirectory() as folder:  # a pair that cannot work: no row
                    config = make_config(family, data, device, Path(folder))
                inputs = INPUTS[data]
                if inputs not in (accepted_inputs(config.model) or (inputs,)):
                    continue
                row = compare(
                    family,
                    data,
                    device,
                    repeats=1 if args.quick else args.repeats,
                    quick=args.quick,
                )
                window = (
                    f"{row['epochs']} epochs" if row["steps"] is None else f"{row['steps']} steps"
                )
                print(
                    f"| {device} | {family} | {data} | {row['batch']} | {window} "
                    f"| {row['lightning_sps']:,.0f} | {row['raw_sps']:,.0f} "
                    f"| **{row['ratio']:.2f}** | {row['lightning_s']:.2f} | {row['raw_s']:.2f} |",
                    flush=True,
                )
    if "cuda" in devices:
        print(
            "\n| device | cnn, one epoch of 60,000 MNIST-shaped samples, batch 128 "
            "| zoo (Lightning) s | raw loop s | ratio |\n|---|---|---|---|---|"
        )
        for name, overrides in (("eager", ()), ("model.compile=true", ("model.compile=true",))):
            row = compare(
                "cnn",
                "mnist-shaped",
                "cuda",
                repeats=1 if args.quick else args.repeats,
                quick=args.quick,
                full_epochs=True,
                overrides=overrides,
            )
            print(
                f"| cuda | {name} | {60000 / row['lightning_sps']:.3f} "
                f"| {60000 / row['raw_sps']:.3f} | **{row['ratio']:.2f}** |",
                flush=True,
            )
    print(
        "\n| device | loader over 60000x1x28x28, batch 128, shuffled | samples/s | vs in-memory |"
        "\n|---|---|---|---|"
    )
    for device in devices:
        results = compare_loaders(device)
        for name, rate in results:
            print(f"| {device} | {name} | {rate:,.0f} | {results[0][1] / rate:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
