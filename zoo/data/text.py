"""Character-level text for language models: any UTF-8 file or folder, or Python's own sources.

The default corpus is real text that every machine with Python has and nothing downloads: the
standard library's top-level modules (`<stdlib>/*.py`), in file-name order, up to
`max_chars` characters. It therefore depends on the Python version (documented in the README).
"""

from __future__ import annotations

import lzma
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor

from zoo.data.base import InMemoryLoader, ResumableLoader, check_counts
from zoo.data.files import read_bytes
from zoo.data.spec import DataSpec

UNKNOWN = "\ufffd"  # id 0: characters the training split never showed


def stdlib_corpus(max_chars: int) -> tuple[str, list[Path]]:
    """The standard library's top-level .py files in name order, up to `max_chars` characters."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    parts, files, size = [], [], 0
    for path in sorted(folder.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        files.append(path)
        size += len(text)
        if size >= max_chars:
            break
    if not parts:
        raise FileNotFoundError(f"no Python sources in {folder}; bring text with data.path=...")
    return "".join(parts)[:max_chars], files


def read_text(path: Path) -> str:
    """A UTF-8 text file, or all UTF-8 text files under a folder (name order, binaries skipped);
    one ValueError line when there is no text."""
    if not path.exists():
        raise FileNotFoundError(f"data.path {path} does not exist")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    texts = [text for text in map(decode, files) if text is not None]
    if path.is_file() and not texts:
        raise ValueError(f"data.path {path} is not UTF-8 text (a binary file?)")
    if not texts:
        raise ValueError(f"data.path {path} holds no UTF-8 text files")
    text = "".join(texts)
    if not text:
        raise ValueError(f"data.path {path} is empty")
    return text


def decode(path: Path) -> str | None:
    """The file's text, or None when it is not UTF-8 text (undecodable, or holding NUL bytes);
    an unreadable file is one DataFileError line, never skipped."""
    raw = read_bytes(path)
    if b"\x00" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Vocabulary:
    """Characters <-> ids: the training split's characters in code-point order from id 1; id 0
    stands for any character the training split lacks."""

    def __init__(self, characters: str) -> None:
        self.characters = characters  # characters[i] is the character of id i
        self.code_points = np.array([ord(c) for c in characters[1:]], dtype=np.int64)

    @classmethod
    def of(cls, text: str) -> Vocabulary:
        return cls(UNKNOWN + "".join(sorted(set(text) - {UNKNOWN})))

    def __len__(self) -> int:
        return len(self.characters)

    def encode(self, text: str) -> Tensor:
        """Text -> int64 ids (unknown characters -> 0)."""
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        index = np.searchsorted(self.code_points, points)
        index = np.minimum(index, len(self.code_points) - 1)
        known = self.code_points[index] == points
        return torch.from_numpy(np.where(known, index + 1, 0))

    def decode(self, ids: Tensor | list[int]) -> str:
        return "".join(self.characters[i] for i in torch.as_tensor(ids).tolist())


def windows(ids: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """Non-overlapping (input, next-token target) windows covering `ids`."""
    count = (len(ids) - 1) // block_size
    inputs = ids[: count * block_size].view(count, block_size)
    targets = ids[1 : count * block_size + 1].view(count, block_size)
    return inputs, targets


class RandomWindows(ResumableLoader):
    """`steps` batches per epoch of `batch_size` windows at random offsets, drawn on the ids'
    device from a generator seeded with (`seed`, epoch) (give each process of a multi-process
    run its own seed), so every epoch sees other windows. Resumable mid-epoch
    (ResumableLoader): a resumed epoch redraws the offsets it already served and skips them."""

    def __init__(self, ids: Tensor, block_size: int, batch_size: int, steps: int, seed: int = 0):
        super().__init__()
        self.ids, self.block_size, self.batch_size, self.steps = ids, block_size, batch_size, steps
        self.seed = seed
        self.offsets = torch.arange(block_size + 1, device=ids.device)
        self.generator = torch.Generator(device=ids.device)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        first = self.start()
        high = len(self.ids) - self.block_size - 1
        self.generator.manual_seed(hash((self.seed, self.sampler.epoch)) % 2**63)
        for step in range(self.steps):
            starts = torch.randint(
                0, high + 1, (self.batch_size, 1), device=self.ids.device, generator=self.generator
            )
            if step < first:  # served before the interruption
                continue
            chunk = self.ids[starts + self.offsets]
            self.served(step + 1, self.steps)
            yield chunk[:, :-1], chunk[:, 1:]


class TextDataModule(L.LightningDataModule):
    """A character corpus split contiguously into train / val / test (the last fractions).

    Training: `steps_per_epoch` batches of random `block_size` windows; val/test: every
    non-overlapping window in order. All on the training device, batched by slicing.
    """

    name = "text"

    def __init__(
        self,
        path: str | None = None,
        block_size: int = 128,
        batch_size: int = 32,
        steps_per_epoch: int = 50,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        max_chars: int = 2_000_000,
    ) -> None:
        super().__init__()
        check_counts(
            block_size=block_size,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            max_chars=max_chars,
        )
        if not (
            0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1
        ):
            raise ValueError(
                "data.val_fraction and data.test_fraction must be in (0, 1) with a sum below 1, "
                f"got {val_fraction} and {test_fraction}"
            )
        self.path = Path(path) if path else None
        self.block_size = block_size
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.fractions = (val_fraction, test_fraction)
        self.max_chars = max_chars
        self.texts: dict[str, str] = {}
        self.ids: dict[str, Tensor] = {}
        self.vocabulary: Vocabulary | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.texts:
            return
        if self.path is None:
            text, _ = stdlib_corpus(self.max_chars)
        else:
            text = read_text(self.path)[: self.max_chars]
        n_val, n_test = (round(len(text) * f) for f in self.fractions)
        train_end = len(text) - n_val - n_test
        texts = {
            "train": text[:train_end],
            "val": text[train_end : train_end + n_val],
            "test": text[train_end + n_val :],
        }
        for split, part in texts.items():
            if len(part) < self.block_size + 1:
                where = self.path or "the default corpus"
                raise ValueError(
                    f"data.block_size {self.block_size} does not fit the {split} split of {where} "
                    f"({len(part)} characters); lower data.block_size or bring more text"
                )
        self.vocabulary = Vocabulary.of(texts["train"])
        self.ids = {split: self.vocabulary.encode(part) for split, part in texts.items()}
        self.texts = texts

    @property
    def spec(self) -> DataSpec:
        self.setup()
        size = len(self.vocabulary)
        return DataSpec(
            (self.block_size,),
            size,
            kind="language_model",
            inputs="tokens",
            vocab_size=size,
            per_position=True,
            vocabulary=self.vocabulary.characters,
        )

    def reference_bits_per_char(self) -> dict[str, float]:
        """What a model's test/bpc means: the test split's bits per character under the training
        split's character frequencies (unigram), and what xz (lzma) needs for it when it
        compresses the test split after the training split."""
        self.setup()
        train, test = self.texts["train"], self.texts["test"]
        counts = torch.bincount(self.ids["train"], minlength=len(self.vocabulary)).double() + 1
        unigram = -torch.log2(counts / counts.sum())[self.ids["test"]].mean()
        alone = len(lzma.compress(train.encode()))
        both = len(lzma.compress((train + test).encode()))
        return {
            "reference/unigram_bpc": float(unigram),
            "reference/xz_bpc": max(0.0, 8 * (both - alone) / len(test)),
        }

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def train_dataloader(self) -> RandomWindows:
        self.setup()
        ids = self.ids["train"].to(self._device())
        trainer = getattr(self, "trainer", None)
        seed = torch.initial_seed() % 2**31 + (trainer.global_rank if trainer is not None else 0)
        return RandomWindows(ids, self.block_size, self.batch_size, self.steps_per_epoch, seed)

    def _windows(self, split: str) -> InMemoryLoader:
        self.setup()
        inputs, targets = windows(self.ids[split], self.block_size)
        trainer = getattr(self, "trainer", None)
        return InMemoryLoader(
            inputs.to(self._device()),
            targets.to(self._device()),
            batch_size=self.batch_size,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def val_dataloader(self) -> InMemoryLoader:
        return self._windows("val")

    def test_dataloader(self) -> InMemoryLoader:
        return self._windows("test")
