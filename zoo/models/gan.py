"""Generative adversarial networks: a generator G(z) and a discriminator D(x) trained as rivals.

`GAN` uses multilayer perceptrons, `DCGAN` a transposed-convolution generator and a convolutional
discriminator; both share one training path (Lightning 2 manual optimization).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torchvision.utils import make_grid

from zoo import fid
from zoo.models.base import DEFAULT_OPTIMIZER, EpochMeans, StepLogging, check_optimizer
from zoo.models.feedforward import check_sizes

MONITOR = "val/fid"  # lower is better


def image_grid(
    images: Tensor, low: float, high: float, nrow: int = 8, min_size: int = 32
) -> Tensor:
    """Images in the data's value range -> one (C, H, W) grid in [0, 1], upscaled if tiny."""
    images = images.detach().float().cpu()
    if images.shape[-1] < min_size:
        images = F.interpolate(images, scale_factor=math.ceil(min_size / images.shape[-1]))
    return make_grid(images, nrow=nrow, padding=2, normalize=True, value_range=(low, high))


class GAN(StepLogging, L.LightningModule):
    """Generator and discriminator of multilayer perceptrons; the shared adversarial training path.

    Subclasses override `make_generator` and `make_discriminator`. D learns to tell real images
    from G(z).detach(); G learns to make D call its samples real (non-saturating loss). Optimizers:
    the `optimizer` config's class and options, with lr and betas set per network (DCGAN practice:
    lr 2e-4, betas (0.5, 0.999)). `val/fid` and `test/fid` score samples against the held-out split.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int = 10,
        latent_dim: int = 64,
        generator_widths: Sequence[int] = (128, 256),
        discriminator_widths: Sequence[int] = (256, 128),
        g_lr: float | None = 2e-4,
        d_lr: float | None = 2e-4,
        g_betas: Sequence[float] | None = (0.5, 0.999),
        d_betas: Sequence[float] | None = (0.5, 0.999),
        d_steps: int = 1,
        label_smoothing: float = 0.0,
        fid_classifier_epochs: int = 5,
        fid_cache_dir: str | None = None,
        task: str = "classification",
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        if len(self.input_shape) != 3:
            raise ValueError(f"{type(self).__name__} needs images (channels, height, width), "
                             f"got shape {self.input_shape}")
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"model.latent_dim must be a positive integer, got {latent_dim!r}")
        check_sizes("generator_widths", generator_widths)
        check_sizes("discriminator_widths", discriminator_widths)
        if not isinstance(d_steps, int) or d_steps < 1:
            raise ValueError(f"model.d_steps must be an integer >= 1, got {d_steps!r}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"model.label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.latent_dim = latent_dim
        self.d_steps = d_steps
        self.label_smoothing = label_smoothing
        base = dict(optimizer or DEFAULT_OPTIMIZER)
        self.optimizer_configs = {
            "generator": self._optimizer_config(base, g_lr, g_betas),
            "discriminator": self._optimizer_config(base, d_lr, d_betas),
        }
        for config in self.optimizer_configs.values():
            check_optimizer(config)
        self.scheduler_config = dict(scheduler) if scheduler else None
        self.generator = self.make_generator(latent_dim, list(generator_widths))
        self.discriminator = self.make_discriminator(list(discriminator_widths))
        # The data's value range (set from the training split in `setup`): G's tanh maps onto it.
        self.register_buffer("data_low", torch.tensor(-1.0))
        self.register_buffer("data_high", torch.tensor(1.0))
        # One fixed latent batch, so the logged grid shows the same samples improving.
        seeded = torch.Generator().manual_seed(0)
        self.register_buffer("fixed_z", torch.randn(64, latent_dim, generator=seeded))
        self.train_means = EpochMeans(["d_loss", "d_real", "d_fake", "g_loss"])
        # The FID metrics hold a frozen classifier; kept out of the module tree (and checkpoints).
        self.scores: dict[str, Any] = {}

    @staticmethod
    def _optimizer_config(base: dict, lr: float | None, betas: Sequence[float] | None) -> dict:
        config = dict(base)
        if lr is not None:
            config["lr"] = lr
        if betas is not None:
            config["betas"] = list(betas)
        return config

    def make_generator(self, latent_dim: int, widths: list[int]) -> nn.Module:
        """z (B, latent_dim) -> image logits (B, *input_shape), before the final tanh."""
        layers: list[nn.Module] = []
        for width_in, width in zip([latent_dim, *widths], widths):
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(0.2)]
        return nn.Sequential(*layers, nn.Linear(widths[-1], math.prod(self.input_shape)),
                             nn.Unflatten(1, self.input_shape))

    def make_discriminator(self, widths: list[int]) -> nn.Module:
        """Image (B, *input_shape) -> one logit per image (B, 1)."""
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width in zip([math.prod(self.input_shape), *widths], widths):
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(0.2)]
        return nn.Sequential(*layers, nn.Linear(widths[-1], 1))

    def forward(self, z: Tensor) -> Tensor:
        """Generate images in the data's value range from latent vectors z (B, latent_dim)."""
        unit = (torch.tanh(self.generator(z)) + 1) / 2
        return self.data_low + unit * (self.data_high - self.data_low)

    def sample(self, n: int) -> Tensor:
        """n fresh images from G."""
        return self(torch.randn(n, self.latent_dim, device=self.data_low.device))

    def grid(self, images: Tensor, nrow: int = 8) -> Tensor:
        """A (C, H, W) image grid in [0, 1] of images in the data's value range."""
        return image_grid(images, float(self.data_low), float(self.data_high), nrow=nrow)

    # --- data-dependent setup: value range and the FID feature extractor -------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is None or self.scores:
            return
        key, _, low, high = fid.fingerprint(datamodule.train_dataloader())
        if stage == "fit":  # later stages restore the range from the checkpoint
            self.data_low.fill_(float(low))
            self.data_high.fill_(float(high))
        features = fid.feature_extractor(datamodule, key, self.hparams.fid_classifier_epochs,
                                         self.hparams.fid_cache_dir)
        self.scores = {stage: fid.frechet_distance(features) for stage in ("val", "test")}

    # --- training: one D update per batch, one G update every d_steps batches -------------
    def training_step(self, batch: Any, batch_idx: int) -> None:
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        optimizer_g, optimizer_d = self.optimizers()
        fake = self.sample(len(real))

        self.toggle_optimizer(optimizer_d)
        logits_real = self.discriminator(real)
        logits_fake = self.discriminator(fake.detach())
        real_target = torch.full_like(logits_real, 1.0 - self.label_smoothing)
        d_loss = (F.binary_cross_entropy_with_logits(logits_real, real_target)
                  + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))
        optimizer_d.zero_grad()
        self.manual_backward(d_loss)
        optimizer_d.step()
        self.untoggle_optimizer(optimizer_d)
        values = {"d_loss": d_loss, "d_real": torch.sigmoid(logits_real).mean(),
                  "d_fake": torch.sigmoid(logits_fake).mean()}

        if (batch_idx + 1) % self.d_steps == 0:
            self.toggle_optimizer(optimizer_g)
            logits = self.discriminator(fake)
            g_loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
            optimizer_g.zero_grad()
            self.manual_backward(g_loss)
            optimizer_g.step()
            self.untoggle_optimizer(optimizer_g)
            values["g_loss"] = g_loss
        self.log_train_step(values, len(real), prog_bar=("d_loss", "g_loss"))

    def on_train_epoch_end(self) -> None:
        self.log_epoch("train")
        for scheduler in self._schedulers():
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if MONITOR in self.trainer.callback_metrics:
                    scheduler.step(self.trainer.callback_metrics[MONITOR])
            else:
                scheduler.step()
        if isinstance(self.logger, TensorBoardLogger):
            with torch.no_grad():
                grid = self.grid(self(self.fixed_z))
            self.logger.experiment.add_image("samples", grid, self.current_epoch)

    def _schedulers(self) -> list:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return []
        return schedulers if isinstance(schedulers, list) else [schedulers]

    # --- evaluation: Fréchet distance between held-out images and as many samples ----------
    def _score_step(self, batch: Any, stage: str) -> None:
        if stage not in self.scores:
            raise RuntimeError(f"{stage}/fid needs a datamodule (trainer.fit/test(datamodule=...))")
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        metric = self.scores[stage].to(self.device)
        metric.update(real, real=True)
        metric.update(self.sample(len(real)), real=False)

    def _log_score(self, stage: str) -> None:
        metric = self.scores.get(stage)
        if metric is not None and metric.real_features_num_samples > 1:
            self.log(f"{stage}/fid", metric.compute().float(), prog_bar=True)
            metric.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._score_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_score("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._score_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_score("test")

    def configure_optimizers(self) -> Any:
        optimizers = [
            instantiate(self.optimizer_configs[name], params=getattr(self, name).parameters())
            for name in ("generator", "discriminator")
        ]
        if not self.scheduler_config:
            return optimizers
        config = {k: v for k, v in self.scheduler_config.items()
                  if k not in ("interval", "monitor")}
        return optimizers, [instantiate(config, optimizer=o) for o in optimizers]

    def configure_callbacks(self) -> list:
        """The run's checkpoint callback, monitoring val/fid instead of val/loss (GANs lack it)."""
        current = self.trainer.checkpoint_callback
        if current is None or current.monitor in (None, MONITOR):
            return []
        return [ModelCheckpoint(
            dirpath=current.dirpath, filename=current.filename, monitor=MONITOR, mode="min",
            save_top_k=current.save_top_k, save_last=current.save_last,
            auto_insert_metric_name=current.auto_insert_metric_name,
        )]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["zoo_class"] = f"{type(self).__module__}.{type(self).__qualname__}"


class DCGAN(GAN):
    """Deep convolutional GAN: transposed convolutions up from a small map, strided ones down.

    G doubles the spatial size per layer from (H, W) / 2^k, where k is how often both sides halve
    evenly (at most one halving per generator width), so 8x8, 28x28 and 32x32 all come out exact.
    """

    def make_generator(self, latent_dim: int, widths: list[int]) -> nn.Module:
        channels, height, width = self.input_shape
        ups = 0
        while ups < len(widths) and height % 2 == 0 and width % 2 == 0 and min(height, width) > 2:
            height, width, ups = height // 2, width // 2, ups + 1
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, widths[0] * height * width, bias=False),
            nn.Unflatten(1, (widths[0], height, width)),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for width_in, width_out in zip(widths[: ups - 1], widths[1:ups]):
            layers += [nn.ConvTranspose2d(width_in, width_out, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width_out), nn.ReLU(inplace=True)]
        last = widths[max(ups - 1, 0)]
        if ups:
            layers.append(nn.ConvTranspose2d(last, channels, 4, 2, 1))
        else:
            layers.append(nn.Conv2d(last, channels, 3, padding=1))
        return nn.Sequential(*layers)

    def make_discriminator(self, widths: list[int]) -> nn.Module:
        channels, height, width = self.input_shape
        layers: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(zip([channels, *widths], widths)):
            stride = 2 if min(height, width) >= 4 else 1
            kernel = 4 if stride == 2 else 3
            layers += [nn.Conv2d(width_in, width_out, kernel, stride, 1, bias=False)]
            if i > 0:
                layers.append(nn.BatchNorm2d(width_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if stride == 2:
                height, width = height // 2, width // 2
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(widths[-1] * height * width, 1))
