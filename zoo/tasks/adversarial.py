"""Adversarial learning: a generator G(z) and a discriminator D(x) trained as rivals (GANs)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchvision.utils import make_grid

from zoo.metrics import fid
from zoo.nets import ConvNet
from zoo.nets.checks import check_image, check_positive
from zoo.tasks.base import Task, build_net, check_optimizer, each_stage, register

MLP_GENERATOR = {"_target_": "zoo.nets.MLPGenerator", "widths": [128, 256]}
MLP_DISCRIMINATOR = {"_target_": "zoo.nets.MLPDiscriminator", "widths": [256, 128]}


def image_grid(
    images: Tensor, low: float, high: float, nrow: int = 8, min_size: int = 32
) -> Tensor:
    """Images in the data's value range -> one (C, H, W) grid in [0, 1], upscaled if tiny."""
    images = images.detach().float().cpu()
    if images.shape[-1] < min_size:
        images = F.interpolate(images, scale_factor=math.ceil(min_size / images.shape[-1]))
    return make_grid(images, nrow=nrow, padding=2, normalize=True, value_range=(low, high))


@register
class Adversarial(Task):
    """Non-saturating GAN training with Lightning's manual optimization.

    D learns to tell real images from G(z).detach(); G learns to make D call its samples real.
    `generator` and `discriminator` are network configs (`_target_`: a class in zoo.nets, or any
    nn.Module class taking the same arguments, and its options), built for `latent_dim` and the
    data's image shape. Optimizers: the `optimizer` config's class and options, with lr and
    betas set per network (DCGAN practice: lr 2e-4, betas (0.5, 0.999)). `val/fid` and
    `test/fid` score samples against the held-out split in a data-trained classifier's features
    (zoo.metrics.fid).
    """

    accepts = ("image",)
    higher_is_better = each_stage(fid=bool(FrechetInceptionDistance.higher_is_better))
    val_metric = ("val/fid",)
    test_metric = ("test/fid",)
    monitor = "val/fid"
    network_options = ("generator", "discriminator")
    learning_rate_options = ("g_lr", "d_lr")
    samples = "images"
    train_values = ("d_loss", "d_real", "d_fake", "g_loss")
    eval_values = ()
    ddp_finds_unused_parameters = True  # D's pass leaves G unused, G's pass leaves D frozen

    def __init__(
        self,
        input_shape: Sequence[int],
        generator: Mapping[str, Any] = MLP_GENERATOR,
        discriminator: Mapping[str, Any] = MLP_DISCRIMINATOR,
        latent_dim: int = 64,
        g_lr: float | None = 2e-4,
        d_lr: float | None = 2e-4,
        g_betas: Sequence[float] | None = (0.5, 0.999),
        d_betas: Sequence[float] | None = (0.5, 0.999),
        d_steps: int = 1,
        label_smoothing: float = 0.0,
        fid_classifier_epochs: int = 5,
        fid_cache_dir: str | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(input_shape, optimizer, scheduler, compile)
        check_image(type(self), self.input_shape)
        check_positive("latent_dim", latent_dim)
        check_positive("d_steps", d_steps)
        check_positive("fid_classifier_epochs", fid_classifier_epochs)  # -1 would train forever
        if not (isinstance(label_smoothing, (int, float)) and 0 <= label_smoothing < 1):
            raise ValueError(f"model.label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.latent_dim = latent_dim
        self.generator = build_net(
            generator, "model.generator", latent_dim=latent_dim, output_shape=self.input_shape
        )
        self.discriminator = build_net(
            discriminator, "model.discriminator", input_shape=self.input_shape
        )
        self.per_network = {"generator": (g_lr, g_betas), "discriminator": (d_lr, d_betas)}
        for config in self.optimizer_configs().values():
            check_optimizer(config)
        # The data's value range (set from the training split in `setup`): G's tanh maps onto it.
        self.register_buffer("data_low", torch.tensor(-1.0))
        self.register_buffer("data_high", torch.tensor(1.0))
        # One fixed latent batch, so the logged grid shows the same samples improving.
        seeded = torch.Generator().manual_seed(0)
        self.register_buffer("fixed_z", torch.randn(64, latent_dim, generator=seeded))
        # The FID metrics hold a frozen classifier; kept out of the module tree (and checkpoints).
        self.scores: dict[str, Any] = {}
        self.noise: torch.Generator | None = None  # G's training noise, one stream per process

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizer_configs(self) -> dict[str, dict[str, Any]]:
        """The optimizer config with each network's own lr and betas (None: the config's)."""
        configs = {}
        for name, (lr, betas) in self.per_network.items():
            config = dict(self.optimizer_config)
            if lr is not None:
                config["lr"] = lr
            if betas is not None:
                config["betas"] = list(betas)
            configs[name] = config
        return configs

    def example_input(self, batch: int = 2, generator: torch.Generator | None = None) -> Tensor:
        """Random latent vectors (forward generates images from them)."""
        return torch.randn(batch, self.latent_dim, generator=generator)

    @property
    def name(self) -> str:
        return f"GAN ({type(self.generator).__name__}, {type(self.discriminator).__name__})"

    def forward(self, z: Tensor) -> Tensor:
        """Generate images in the data's value range from latent vectors z (B, latent_dim)."""
        unit = (torch.tanh(self.generator(z)) + 1) / 2
        return self.data_low + unit * (self.data_high - self.data_low)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n fresh images from G (noise from `generator`, else torch's global one)."""
        z = torch.randn(n, self.latent_dim, device=self.data_low.device, generator=generator)
        return self(z)

    def grid(self, images: Tensor, nrow: int = 8) -> Tensor:
        """A (C, H, W) image grid in [0, 1] of images in the data's value range."""
        return image_grid(images, float(self.data_low), float(self.data_high), nrow=nrow)

    # --- data-dependent setup: value range and the FID feature extractor -------------------
    def setup(self, stage: str) -> None:
        """The data's value range and the FID classifier: made by process 0 (on the run's
        device, from the whole training split) and sent to every other DDP process."""
        super().setup(stage)
        datamodule = self.trainer.datamodule
        if datamodule is None or self.scores:
            return
        made = None
        if self.trainer.is_global_zero:
            key, _, low, high = fid.fingerprint(fid.full_training_split(datamodule))
            classifier = fid.feature_extractor(
                datamodule,
                key,
                self.hparams.fid_classifier_epochs,
                self.hparams.fid_cache_dir,
                self.trainer.strategy.root_device,
            )
            made = (float(low), float(high), classifier.state_dict())
        low, high, state = self.trainer.strategy.broadcast(made, src=0)
        if stage == "fit":  # later stages restore the range from the checkpoint
            self.data_low.fill_(low)
            self.data_high.fill_(high)
        spec = datamodule.spec
        classifier = ConvNet(spec.input_shape, spec.num_outputs, **fid.CLASSIFIER)
        classifier.load_state_dict(state)
        self.scores = {stage: fid.frechet_distance(classifier) for stage in ("val", "test")}

    def on_fit_start(self) -> None:
        """Each DDP process draws its own noise for G (one seed per process, from the run's)."""
        seed = (torch.initial_seed() + 7919 * self.global_rank) % 2**63
        self.noise = torch.Generator(self.device).manual_seed(seed)

    # --- training: one D update per batch, one G update every d_steps batches -------------
    def training_step(self, batch: Any, batch_idx: int) -> None:
        real = self.prepare_input(batch[0] if isinstance(batch, (tuple, list)) else batch)
        optimizer_g, optimizer_d = self.optimizers()
        fake = self.sample(len(real), self.noise)

        self.toggle_optimizer(optimizer_d)
        logits_real = self.discriminator(real)
        logits_fake = self.discriminator(fake.detach())
        real_target = torch.full_like(logits_real, 1.0 - self.hparams.label_smoothing)
        d_loss = F.binary_cross_entropy_with_logits(
            logits_real, real_target
        ) + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
        optimizer_d.zero_grad()
        self.manual_backward(d_loss)
        optimizer_d.step()
        self.untoggle_optimizer(optimizer_d)
        values = {
            "d_loss": d_loss,
            "d_real": torch.sigmoid(logits_real).mean(),
            "d_fake": torch.sigmoid(logits_fake).mean(),
        }

        if (batch_idx + 1) % self.hparams.d_steps == 0:
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
        super().on_train_epoch_end()
        if isinstance(self.logger, TensorBoardLogger):
            with torch.no_grad():
                grid = self.grid(self(self.fixed_z))
            self.logger.experiment.add_image("samples", grid, self.current_epoch)

    # --- evaluation: Fréchet distance between held-out images and as many samples ----------
    def _score_step(self, batch: Any, stage: str) -> None:
        if stage not in self.scores:
            raise RuntimeError(f"{stage}/fid needs a datamodule (trainer.fit/test(datamodule=...))")
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        metric = self.scores[stage].to(self.device)
        metric.update(real, real=True)
        metric.update(self.sample(len(real), self.noise), real=False)

    def _log_score(self, stage: str) -> None:
        metric = self.scores.get(stage)
        if metric is not None and metric.real_features_num_samples > 1:
            # sync_dist: the metric's statistics are synced already; this keeps Lightning quiet.
            self.log(f"{stage}/fid", metric.compute().float(), prog_bar=True, sync_dist=True)
            metric.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._score_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_score("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._score_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_score("test")
