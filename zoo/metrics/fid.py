"""Sample quality without Inception weights: Fréchet distance in a trained classifier's features.

The feature extractor is the zoo's own ConvNet, trained on the training split of the data the GAN
learns (a few epochs, with its own Lightning Trainer) and cached on disk keyed by the data's
fingerprint, so every GAN run on the same data scores with the same features.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from zoo.checkpoints import read_checkpoint
from zoo.nets import ConvNet
from zoo.tasks.supervised import Supervised

CLASSIFIER = {"channels": [32, 64], "hidden_size": 128, "dropout": 0.25}


class ClassifierFeatures(nn.Module):
    """The penultimate layer of a trained ConvNet: (N, C, H, W) -> (N, hidden_size), frozen."""

    def __init__(self, classifier: ConvNet) -> None:
        super().__init__()
        self.body = nn.Sequential(*list(classifier)[:-1])  # all but the output layer
        self.num_features = classifier[-1].in_features
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)  # always in eval mode: fixed batch-norm statistics

    def forward(self, images: Tensor) -> Tensor:
        return self.body(images.float())


def fingerprint(batches: Iterable) -> tuple[str, int, Tensor, Tensor]:
    """A content key for a training split, its size and its per-pixel range (low, high)."""
    count, total, squares = 0, 0.0, 0.0
    low, high = torch.tensor(float("inf")), torch.tensor(float("-inf"))
    for batch in batches:
        x = (batch[0] if isinstance(batch, (tuple, list)) else batch).detach().double().cpu()
        count += len(x)
        total += float(x.sum())
        squares += float(x.square().sum())
        low, high = torch.minimum(low, x.min().float()), torch.maximum(high, x.max().float())
    text = f"{count},{total:.6g},{squares:.6g},{float(low):.6g},{float(high):.6g},{CLASSIFIER}"
    return hashlib.sha1(text.encode()).hexdigest()[:12], count, low, high


def train_classifier(datamodule: L.LightningDataModule, epochs: int) -> ConvNet:
    """Fit a ConvNet on the datamodule's training split with a separate, silent Trainer."""
    spec = datamodule.spec
    classifier = ConvNet(spec.input_shape, spec.num_outputs, **CLASSIFIER)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    task = Supervised(classifier, spec.input_shape, spec.num_outputs)
    trainer.fit(task, train_dataloaders=datamodule.train_dataloader())
    return classifier.cpu().eval()


def feature_extractor(
    datamodule: L.LightningDataModule, key: str, epochs: int = 5, cache_dir: str | None = None
) -> ClassifierFeatures:
    """The classifier features for this data: loaded from `cache_dir` if cached, else trained."""
    spec = datamodule.spec
    classifier = ConvNet(spec.input_shape, spec.num_outputs, **CLASSIFIER)
    name = f"{datamodule.__class__.__name__}-{'x'.join(map(str, spec.input_shape))}"
    path = Path(cache_dir) / f"{name}-{key}-e{epochs}.pt" if cache_dir else None
    if path is not None and path.is_file():
        classifier.load_state_dict(read_checkpoint(path))
    else:
        classifier = train_classifier(datamodule, epochs)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(classifier.state_dict(), path)
    return ClassifierFeatures(classifier.eval())


def frechet_distance(features: nn.Module) -> FrechetInceptionDistance:
    """torchmetrics' FID over a custom feature extractor (no Inception, no torch-fidelity)."""
    return FrechetInceptionDistance(feature=features, normalize=True, reset_real_features=True)
