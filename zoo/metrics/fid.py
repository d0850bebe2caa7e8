"""Sample quality without Inception weights: Fréchet distance in a trained classifier's features.

The feature extractor is the zoo's own ConvNet, trained on the training split of the data the GAN
learns (a few epochs, a plain loop on the run's device, in float32) and cached on disk keyed by
the data's fingerprint, so every GAN run on the same data scores with the same features. Under
DDP one process makes it and shares it (`Adversarial.setup`); features are always float32.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from zoo.loading import read_checkpoint
from zoo.nets import ConvNet

CLASSIFIER = {"channels": [32, 64], "hidden_size": 128, "dropout": 0.25}
CLASSIFIER_SEED = 0  # the classifier's initialisation and batch order: the same in every run


class ClassifierFeatures(nn.Module):
    """The penultimate layer of a trained ConvNet: (N, C, H, W) -> (N, hidden_size) float32,
    frozen, also inside a mixed-precision run (autocast off)."""

    def __init__(self, classifier: ConvNet) -> None:
        super().__init__()
        self.body = nn.Sequential(*list(classifier)[:-1])  # all but the output layer
        self.num_features = classifier[-1].in_features
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)  # always in eval mode: fixed batch-norm statistics

    def forward(self, images: Tensor) -> Tensor:
        with torch.autocast(images.device.type, enabled=False):
            return self.body(images.float())


def full_training_split(datamodule: L.LightningDataModule) -> Iterable:
    """The datamodule's whole training split as batches, also in a DDP process (whose own
    loader holds only its share): the loader a datamodule gives with no trainer attached."""
    trainer, datamodule.trainer = datamodule.trainer, None
    try:
        return datamodule.train_dataloader()
    finally:
        datamodule.trainer = trainer


def inputs_of(batch: Tensor | tuple | list) -> Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def fingerprint(batches: Iterable) -> tuple[str, int, Tensor, Tensor]:
    """A content key for a training split, its size and its per-pixel range (low, high)."""
    count, total, squares = 0, 0.0, 0.0
    low, high = torch.tensor(float("inf")), torch.tensor(float("-inf"))
    for batch in batches:
        x = inputs_of(batch).detach().double().cpu()
        count += len(x)
        total += float(x.sum())
        squares += float(x.square().sum())
        low, high = torch.minimum(low, x.min().float()), torch.maximum(high, x.max().float())
    text = f"{count},{total:.6g},{squares:.6g},{float(low):.6g},{float(high):.6g},{CLASSIFIER}"
    return hashlib.sha1(text.encode()).hexdigest()[:12], count, low, high


def train_classifier(batches: Iterable, spec: object, epochs: int, device: torch.device) -> ConvNet:
    """Fit a ConvNet on `batches` (inputs, labels) with a plain Adam loop on `device`, in float32.

    No Trainer of its own: a nested Trainer would pick its own device (and set the current CUDA
    device). The run's random streams are left as they were (forked, then seeded).
    """
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked), torch.autocast(device.type, enabled=False):
        torch.manual_seed(CLASSIFIER_SEED)
        classifier = ConvNet(spec.input_shape, spec.num_outputs, **CLASSIFIER).to(device)
        optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-3)
        classifier.train()
        for _ in range(epochs):
            for images, labels in batches:
                loss = F.cross_entropy(classifier(images.to(device).float()), labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return classifier.cpu().eval()


def feature_extractor(
    datamodule: L.LightningDataModule,
    key: str,
    epochs: int = 5,
    cache_dir: str | None = None,
    device: torch.device | str = "cpu",
) -> ConvNet:
    """The trained classifier for this data (on the CPU): loaded from `cache_dir` if cached,
    else trained on `device` on the whole training split and cached (written atomically)."""
    spec = datamodule.spec
    classifier = ConvNet(spec.input_shape, spec.num_outputs, **CLASSIFIER)
    name = f"{datamodule.__class__.__name__}-{'x'.join(map(str, spec.input_shape))}"
    path = Path(cache_dir) / f"{name}-{key}-e{epochs}.pt" if cache_dir else None
    if path is not None and path.is_file():
        classifier.load_state_dict(read_checkpoint(path))
        return classifier.eval()
    classifier = train_classifier(
        full_training_split(datamodule), spec, epochs, torch.device(device)
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        torch.save(classifier.state_dict(), partial)
        os.replace(partial, path)
    return classifier


def frechet_distance(classifier: ConvNet) -> FrechetInceptionDistance:
    """torchmetrics' FID over a trained classifier's features (no Inception, no torch-fidelity)."""
    return FrechetInceptionDistance(
        feature=ClassifierFeatures(classifier), normalize=True, reset_real_features=True
    )
