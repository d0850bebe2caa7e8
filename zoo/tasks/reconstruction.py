"""Reconstruction: autoencoders (AE, denoising AE) and variational autoencoders (VAE).

Labels are never used in training; at test time they score the codes: k-means on the test
codes against the labels (`test/nmi`, beside k-means on raw pixels, `test/nmi_pixels`), and a
logistic-regression probe fitted on the training split's codes (`test/probe_acc`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from zoo.lightning_private import served
from zoo.metrics.codes import kmeans_nmi, probe_accuracy
from zoo.metrics.fid import fingerprint
from zoo.nets.autoencoder import AutoEncoder, gaussian_kl, reparameterise
from zoo.nets.checks import check_dropout, check_image, check_positive
from zoo.tasks.adversarial import image_grid
from zoo.tasks.base import Task, build_net, each_stage, register

MLP_ENCODER = {"_target_": "zoo.nets.MLPEncoder", "widths": [256, 128]}
MLP_DECODER = {"_target_": "zoo.nets.MLPDecoder", "widths": [128, 256]}
SHOWN = 16  # validation images in the reconstruction grid (and 8 pairs for the VAE's walk)
WALK_STEPS = 10
# Scores of the test codes (sklearn's, not torchmetrics objects): all grow better up.
CODE_SCORES = {"test/nmi": True, "test/nmi_pixels": True, "test/probe_acc": True}
EMBEDDED = 2000  # test codes (with thumbnails) in TensorBoard's embedding projector
PROBE_TRAIN = 10000  # training codes the probe is fitted on, at most


def images_and_labels(batch: Any) -> tuple[Tensor, Tensor | None]:
    """(images, labels) of a batch; labels None when the batch has none."""
    if isinstance(batch, (tuple, list)):
        return batch[0], batch[1] if len(batch) > 1 else None
    return batch, None


def squared_error(reconstruction: Tensor, x: Tensor) -> Tensor:
    """Squared error summed over each sample's values, averaged over the batch."""
    return (reconstruction - x).square().flatten(1).sum(1).mean()


@register
class Reconstruction(Task):
    """A deterministic autoencoder: `train/loss`, `val/loss`, `test/loss` are the squared error
    of the reconstruction (summed over a sample's pixels, averaged over the batch).

    `encoder` and `decoder` are network configs (`_target_`: a class in zoo.nets, MLP or
    convolutional pairs, and its options), built for `latent_dim` and the data's image shape;
    `noise` is
    the fraction of input pixels dropped (set to 0, the data's mean) in training: a denoising
    autoencoder. `num_outputs`, the number of classes, is the number of k-means clusters.
    """

    accepts = ("image",)
    higher_is_better = each_stage(loss=False) | CODE_SCORES
    test_metric = ("test/nmi", "test/loss")
    network_options = ("encoder", "decoder")
    variational: ClassVar[bool] = False

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int = 10,
        encoder: Mapping[str, Any] = MLP_ENCODER,
        decoder: Mapping[str, Any] = MLP_DECODER,
        latent_dim: int = 10,
        noise: float = 0.0,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(input_shape, optimizer, scheduler, compile)
        check_image(type(self), self.input_shape)
        check_positive("latent_dim", latent_dim)
        check_dropout(noise, "noise")
        check_positive("num_outputs", num_outputs)
        self.save_hyperparameters()
        self.latent_dim = latent_dim
        self.net = AutoEncoder(
            build_net(
                encoder,
                "model.encoder",
                input_shape=self.input_shape,
                latent_dim=latent_dim,
                variational=self.variational,
            ),
            build_net(
                decoder, "model.decoder", latent_dim=latent_dim, output_shape=self.input_shape
            ),
        )
        # The data's value range (from the training split in `setup`), for pictures.
        self.register_buffer("data_low", torch.tensor(-1.0))
        self.register_buffer("data_high", torch.tensor(1.0))
        self.example_input_array = torch.zeros(2, *self.input_shape)
        self.shown: Tensor | None = None  # the first validation images, for the pictures
        self.test_outputs: list[tuple[Tensor, Tensor, Tensor]] = []  # codes, images, labels

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    @property
    def name(self) -> str:
        kind = "VAE" if self.variational else "AE"
        return f"{kind} ({type(self.net.encoder).__name__}, {type(self.net.decoder).__name__})"

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction of x (a VAE decodes its mean code in eval mode)."""
        return self.net(x)

    def code(self, x: Tensor) -> Tensor:
        """x's code (a VAE's mean code)."""
        code = self.net.encode(x)
        return code[0] if self.variational else code

    def corrupt(self, x: Tensor) -> Tensor:
        """x with a `noise` fraction of its values set to 0 (a denoising autoencoder's input)."""
        noise = self.hparams.noise
        return x * (torch.rand_like(x) >= noise) if noise > 0 else x

    def losses(self, x: Tensor, inputs: Tensor) -> dict[str, Tensor]:
        """The loss (and its parts) of reconstructing x from `inputs`."""
        return {"loss": squared_error(self.net(inputs), x)}

    # --- data-dependent setup: the value range the pictures show --------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = self.trainer.datamodule
        if stage == "fit" and datamodule is not None:  # later stages: from the checkpoint
            _, _, low, high = fingerprint(datamodule.train_dataloader())
            self.data_low.fill_(float(low))
            self.data_high.fill_(float(high))

    def grid(self, images: Tensor, nrow: int = 8) -> Tensor:
        """A (C, H, W) image grid in [0, 1] of images in the data's value range."""
        images = images.clamp(float(self.data_low), float(self.data_high))
        return image_grid(images, float(self.data_low), float(self.data_high), nrow=nrow)

    # --- steps -----------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = self.prepare_input(images_and_labels(batch)[0])
        values = self.losses(x, self.corrupt(x))
        self.log_train_step(values, len(x), prog_bar=("loss",))
        return values["loss"]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = self.prepare_input(images_and_labels(batch)[0])
        self.val_means.add(self.losses(x, x), len(x))
        if batch_idx == 0:
            self.shown = x[:SHOWN]

    def on_validation_epoch_end(self) -> None:
        self.log_epoch("val")
        if isinstance(self.logger, TensorBoardLogger) and self.shown is not None:
            with torch.no_grad():
                for tag, grid in self.pictures(self.shown).items():
                    self.logger.experiment.add_image(tag, grid, self.global_step)

    def pictures(self, shown: Tensor) -> dict[str, Tensor]:
        """TensorBoard image grids by tag: the shown images above their reconstructions."""
        both = torch.cat([shown, self(shown)])
        return {"reconstructions": self.grid(both, nrow=len(shown))}

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, labels = images_and_labels(batch)
        x = self.prepare_input(x)
        self.test_means.add(self.losses(x, x), len(x))
        if labels is not None:
            self.test_outputs.append((self.code(x).cpu(), x.cpu(), labels.cpu()))

    def on_test_epoch_end(self) -> None:
        outputs, self.test_outputs = self.test_outputs, []
        if not outputs:
            self.log_epoch("test")
            return
        codes, images, labels = (torch.cat(parts) for parts in zip(*outputs))
        self.log_epoch("test", self.code_scores(codes, images, labels))
        if isinstance(self.logger, TensorBoardLogger):
            self.logger.experiment.add_embedding(
                codes[:EMBEDDED],
                metadata=labels[:EMBEDDED].tolist(),
                label_img=self.grid_values(images[:EMBEDDED]),
                global_step=self.global_step,
                tag="test_codes",
            )

    def grid_values(self, images: Tensor) -> Tensor:
        """Images from the data's value range to [0, 1]."""
        low, high = float(self.data_low), float(self.data_high)
        return ((images.float() - low) / max(high - low, 1e-8)).clamp(0, 1)

    def code_scores(self, codes: Tensor, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """test/nmi and test/nmi_pixels (k-means, one cluster per class), test/probe_acc."""
        clusters = self.hparams.num_outputs
        scores = {}
        if len(codes) >= clusters:
            scores["test/nmi"] = kmeans_nmi(codes, labels, clusters)
            scores["test/nmi_pixels"] = kmeans_nmi(images, labels, clusters)
        train = self.training_codes()
        if train is not None and len(train[1].unique()) > 1:
            scores["test/probe_acc"] = probe_accuracy(*train, codes, labels)
        return {name: value.to(self.device) for name, value in scores.items()}

    def training_codes(self) -> tuple[Tensor, Tensor] | None:
        """Codes and labels of (at most PROBE_TRAIN of) the training split, if there is one."""
        datamodule = self.trainer.datamodule
        if datamodule is None:
            return None
        codes, labels, count = [], [], 0
        for batch in datamodule.train_dataloader():
            x, y = images_and_labels(served(self, batch))
            if y is None or count >= PROBE_TRAIN:
                break
            codes.append(self.code(self.prepare_input(x)).cpu())
            labels.append(y.cpu())
            count += len(y)
        return (torch.cat(codes), torch.cat(labels)) if codes else None


@register
class VariationalReconstruction(Reconstruction):
    """A variational autoencoder: the loss is the negative ELBO, `recon` + `beta` * `kl` (a
    reparameterised Gaussian code with a standard normal prior), each part logged as well.

    Pictures: also samples decoded from a fixed batch of prior draws, and a latent-space walk
    (codes interpolated between pairs of validation images). `sample(n)` draws new images.
    """

    higher_is_better = each_stage(loss=False, recon=False, kl=False) | CODE_SCORES
    samples = "images"
    variational = True
    train_values = ("loss", "recon", "kl")
    eval_values = ("loss", "recon", "kl")

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int = 10,
        encoder: Mapping[str, Any] = MLP_ENCODER,
        decoder: Mapping[str, Any] = MLP_DECODER,
        latent_dim: int = 10,
        noise: float = 0.0,
        beta: float = 1.0,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        if isinstance(beta, bool) or not (isinstance(beta, (int, float)) and beta >= 0):
            raise ValueError(f"model.beta must be a number >= 0, got {beta!r}")
        super().__init__(
            input_shape,
            num_outputs,
            encoder,
            decoder,
            latent_dim,
            noise,
            optimizer,
            scheduler,
            compile,
        )
        # One fixed batch of prior draws, so the logged samples show the same codes improving.
        seeded = torch.Generator().manual_seed(0)
        self.register_buffer("fixed_z", torch.randn(64, latent_dim, generator=seeded))

    def losses(self, x: Tensor, inputs: Tensor) -> dict[str, Tensor]:
        mean, log_var = self.net.encode(inputs)
        recon = squared_error(self.net.decode(reparameterise(mean, log_var)), x)
        kl = gaussian_kl(mean, log_var).mean()
        return {"loss": recon + self.hparams.beta * kl, "recon": recon, "kl": kl}

    def sample(self, n: int) -> Tensor:
        """n new images decoded from draws of the prior N(0, 1)."""
        return self.net.decode(torch.randn(n, self.latent_dim, device=self.fixed_z.device))

    def pictures(self, shown: Tensor) -> dict[str, Tensor]:
        """Also `samples` (the fixed prior draws decoded) and `latent_walk` (one row per pair
        of shown images: their mean codes and WALK_STEPS - 2 codes evenly between)."""
        pictures = super().pictures(shown)
        pictures["samples"] = self.grid(self.net.decode(self.fixed_z))
        if len(shown) >= 2:
            codes = self.code(shown[: len(shown) // 2 * 2])
            start, end = codes[0::2], codes[1::2]
            steps = torch.linspace(0, 1, WALK_STEPS, device=codes.device).view(1, -1, 1)
            walk = start[:, None] + steps * (end - start)[:, None]  # (pairs, steps, latent)
            pictures["latent_walk"] = self.grid(
                self.net.decode(walk.flatten(0, 1)), nrow=WALK_STEPS
            )
        return pictures
