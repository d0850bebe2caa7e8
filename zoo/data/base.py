"""Shared data machinery: an in-memory batch loader and a DataModule over whole tensors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from zoo.data.augment import crop_and_flip, padding_for
from zoo.data.spec import DataSpec

LOADERS = ("auto", "memory", "dataloader")


def check_counts(**counts: object) -> None:
    """Each value an integer >= 1, or one ValueError line naming its `data.` option."""
    for key, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"data.{key} must be an integer >= 1, got {value!r}")


class EpochSampler:
    """Which epoch a loader serves: Lightning calls `set_epoch` on a loader's `sampler` at each
    epoch start (as on a DistributedSampler), so a resumed run serves the epoch it resumes."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class ResumePosition:
    """Lightning's stateful-loader protocol over `self.sampler.epoch` and the batches served in
    it: {"epoch", "position"}; `start()` begins a pass where a resume left off."""

    position = 0
    resume_at: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.resume_at = (int(state["epoch"]), int(state["position"]))

    def start(self) -> int:
        """Begin a pass over the current epoch: the batches of it already served (a resume)."""
        resume, self.resume_at = self.resume_at, None
        self.position = resume[1] if resume is not None and resume[0] == self.sampler.epoch else 0
        return self.position


class ResumableLoader(ResumePosition):
    """Lightning's stateful-loader protocol for loaders whose epoch `e` is a function of (seed,
    e): `state_dict()` is {"epoch": e, "position": batches served in e}; after
    `load_state_dict`, the first pass over that same epoch starts at that position, so a run
    resumed mid-epoch sees the batches the uninterrupted run saw. Checkpoints taken at an
    epoch's end resume with the next epoch from its start (Lightning sets it)."""

    batch_sampler = None  # (what Lightning reads next to `sampler`)

    def __init__(self) -> None:
        self.sampler = EpochSampler()

    def served(self, batches: int, total: int) -> None:
        """Count `batches` of this epoch's `total` as served; after all, move on to the next
        epoch (for plain loops: Lightning sets the epoch itself)."""
        self.position = batches
        if batches == total:
            self.sampler.epoch += 1
            self.position = 0

    def __len__(self) -> int:
        raise NotImplementedError


class InMemoryLoader(ResumableLoader):
    """Batches by index slicing of tensors that already sit on the target device.

    When shuffling, epoch e's order is a permutation drawn from `seed` + e; no workers, no
    per-sample Python. With `world_size` > 1 each process takes every world_size-th sample of
    that order, shared by all processes, all with equal counts. Resumable mid-epoch
    (ResumableLoader).
    """

    def __init__(
        self,
        *tensors: Tensor,
        batch_size: int,
        shuffle: bool = False,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.seed = seed

    def __len__(self) -> int:
        return math.ceil(len(self.tensors[0]) // self.world_size / self.batch_size)

    def _order(self, epoch: int) -> Tensor | None:
        """Sample indices for `epoch` and this process; None means all, in order."""
        n, device = len(self.tensors[0]), self.tensors[0].device
        if self.shuffle:  # the same permutation in every process
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(n, generator=generator)
            if self.world_size == 1:
                return order.to(device)
        elif self.world_size == 1:
            return None
        else:
            order = torch.arange(n)
        usable = n // self.world_size * self.world_size  # equal shares: drop < world_size samples
        return order[self.rank : usable : self.world_size].to(device)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        first, total, size = self.start(), len(self), self.batch_size
        order = self._order(self.sampler.epoch)
        for batch in range(first, total):
            start = batch * size
            if order is None:
                chunk = tuple(t[start : start + size] for t in self.tensors)
            else:
                index = order[start : start + size]
                chunk = tuple(t[index] for t in self.tensors)
            self.served(batch + 1, total)
            yield chunk


class ShardSampler(DistributedSampler):
    """torch's DistributedSampler (epoch e's order from `seed` + e, this process's share; Lightning
    sets the epoch and, seeing one, adds none of its own), starting `skip` samples into the epoch
    (a resumed one)."""

    def __init__(self, dataset: Any, rank: int, world_size: int, seed: int, shuffle: bool) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices, self.skip = list(super().__iter__())[self.skip :], 0
        return iter(indices)


class ResumableDataLoader(ResumePosition, DataLoader):
    """A torch DataLoader over a ShardSampler, resumable mid-epoch like ResumableLoader
    ({"epoch", "position"}: the batches it handed out, whatever its workers prefetched)."""

    def __iter__(self) -> Iterator[Any]:
        epoch = self.sampler.epoch
        self.start()
        self.sampler.skip = self.position * self.batch_size
        for batch in super().__iter__():
            self.position += 1
            yield batch
        self.sampler.set_epoch(epoch + 1)  # a whole pass (plain loops; Lightning sets it)
        self.position = 0


class TensorDataModule(L.LightningDataModule):
    """A DataModule whose splits are tensors; subclasses implement `load_splits`.

    `loader="auto"` serves small data from memory (on the training device) and falls back to a
    torch DataLoader above `memory_limit_mb`; "memory" and "dataloader" force one path.
    `augment=True` (images): each training batch, once on the training device, is randomly
    cropped with padding and, unless the data says `flippable = False` (digits), flipped.
    """

    name = "tensors"
    kind = "classification"  # or "regression"
    flippable = True  # mirror images left to right under augment=True (not digits)
    # Image data: {"mean": [...], "std": [...]} per channel, applied to pixels scaled to [0, 1];
    # tasks record it in their checkpoints, so predict.py prepares images the same way.
    image_normalisation: dict[str, list[float]] | None = None

    def __init__(
        self,
        batch_size: int = 64,
        loader: str = "auto",
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        memory_limit_mb: int = 2048,
        augment: bool = False,
    ) -> None:
        super().__init__()
        check_counts(batch_size=batch_size)
        if loader not in LOADERS:
            raise ValueError(f"data.loader must be one of {LOADERS}, got {loader!r}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers!r}")
        self.batch_size = batch_size
        self.loader = loader
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.memory_limit_mb = memory_limit_mb
        self.augment = augment
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Return {"train"|"val"|"test": (inputs, targets)} as CPU tensors."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = self.load_splits()
            for split, (inputs, _) in self.splits.items():
                if len(inputs) == 0:
                    option = "" if split == "train" else f"; raise data.{split}_fraction"
                    raise ValueError(f"the {split} split is empty{option}")
            if self.augment and self.spec.inputs != "image":
                raise ValueError(
                    f"data.augment works on images; this data gives {self.spec.describe()}"
                )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches augmented on the device they train on (`augment=True`)."""
        trainer = self.trainer
        # (The model summary sends its example input, a lone tensor, through here too.)
        training = trainer is not None and trainer.training and isinstance(batch, (tuple, list))
        if self.augment and training:
            images, *rest = batch
            padding = padding_for(*images.shape[-2:])
            batch = (crop_and_flip(images, padding, self.flippable), *rest)
        return batch

    @property
    def spec(self) -> DataSpec:
        """What a network needs: one input's shape, the number of outputs (classes, or values
        for regression), the kind of learning and of input."""
        self.setup()
        inputs, targets = self.splits["train"]
        if self.kind == "regression":
            outputs = 1 if targets.ndim == 1 else targets.shape[1]
        else:
            outputs = int(max(t[1].max() for t in self.splits.values())) + 1
        return DataSpec(tuple(inputs.shape[1:]), outputs, self.kind)

    def _uses_memory(self) -> bool:
        if self.loader != "auto":
            return self.loader == "memory"
        size = sum(t.numel() * t.element_size() for pair in self.splits.values() for t in pair)
        return size <= self.memory_limit_mb * 2**20

    def _loader(self, split: str, shuffle: bool):
        self.setup()
        tensors = self.splits[split]
        if self._uses_memory():
            trainer = getattr(self, "trainer", None)
            device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
            return InMemoryLoader(
                *(t.to(device, non_blocking=True) for t in tensors),
                batch_size=self.batch_size,
                shuffle=shuffle,
                rank=trainer.global_rank if trainer is not None else 0,
                world_size=trainer.world_size if trainer is not None else 1,
                seed=torch.initial_seed() % 2**32,
            )
        return self.torch_loader(TensorDataset(*tensors), shuffle)

    def torch_loader(self, dataset: Any, shuffle: bool) -> DataLoader:
        """A torch DataLoader over `dataset` with the data options; a training one (`shuffle`)
        resumes mid-epoch (ResumableDataLoader)."""
        options = {
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
        }
        if not shuffle:  # Lightning adds a DistributedSampler to this one in multi-process runs
            return DataLoader(dataset, **options)
        trainer = getattr(self, "trainer", None)
        sampler = ShardSampler(
            dataset,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            seed=torch.initial_seed() % 2**32,
            shuffle=True,
        )
        # Its own generator: torch draws a seed for its workers at every pass, which would shift
        # the global random stream a resumed run restores (dropout, augmentation).
        generator = torch.Generator().manual_seed(sampler.seed)
        return ResumableDataLoader(dataset, sampler=sampler, generator=generator, **options)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, Tensor]:
    """A seeded random train/val/test partition of range(n)."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction and test_fraction must be in (0, 1) with a sum below 1, "
            f"got {val_fraction} and {test_fraction}"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    return {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
