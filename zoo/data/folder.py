"""A user's own images: one sub-folder per class (torchvision's ImageFolder layout)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

from zoo.data.base import TensorDataModule, check_counts, split_indices
from zoo.data.spec import DataSpec

EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "val", "test")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes without colour
STATS_SAMPLE = 2000  # images the normalisation statistics are taken from when not all in memory


def decode(path: str, channels: int, size: int) -> Tensor:
    """One image file as uint8 (channels, size, size): grey or RGB, upright (EXIF), resized
    with antialiasing. (PIL decodes: torchvision.io's decoders are deprecated since 0.29.)"""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("L" if channels == 1 else "RGB")
    return F.resize(F.pil_to_tensor(image), [size, size], antialias=True)


class FolderImages(Dataset):
    """Image files decoded one by one (in DataLoader workers), normalised with given stats."""

    def __init__(
        self, files: list[tuple[str, int]], channels: int, size: int, mean: Tensor, std: Tensor
    ) -> None:
        self.files, self.channels, self.size = files, channels, size
        self.mean, self.std = mean.view(-1, 1, 1), std.view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.files[index]
        image = decode(path, self.channels, self.size)
        return (image.float() / 255 - self.mean) / self.std, label


class FolderDataModule(TensorDataModule):
    """Images in `path/<class>/*.png|jpg` (or `path/train/<class>/...` with optional `val/` and
    `test/`): resized to `image_size` squares, grey when every image is grey, RGB otherwise,
    normalised per channel with the training split's mean and std.

    Split sizes missing as folders come from the training images (seeded). With `loader="auto"`
    sets that fit `memory_limit_mb` are decoded once into memory (the fast path); larger ones,
    or `loader="dataloader"`, are decoded in a DataLoader's `num_workers` worker processes.
    """

    name = "folder"

    def __init__(
        self,
        path: str | None = None,
        image_size: int = 32,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        seed: int = 0,
        **loader_args: Any,
    ) -> None:
        if not path:
            raise ValueError("data=folder needs data.path=<folder with one sub-folder per class>")
        check_counts(image_size=image_size)
        split_indices(1, val_fraction, test_fraction, seed)  # validate the fractions now
        super().__init__(**loader_args)
        self.path = Path(path)
        self.name = self.path.name or "folder"
        self.image_size = image_size
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.files: dict[str, list[tuple[str, int]]] = {}
        self.classes: list[str] = []
        self.channels = 3
        self.in_memory = True

    # --- finding the files -------------------------------------------------------------------
    def find_files(self) -> dict[str, list[tuple[str, int]]]:
        """(file, class id) per split; one line for a missing or empty folder, one class, or
        unreadable files."""
        if not self.path.is_dir():
            what = "not a folder" if self.path.exists() else "no such folder"
            raise FileNotFoundError(f"data.path {self.path}: {what}")
        root = self.path / "train" if real_folder(self.path / "train") else self.path
        classes = self.class_folders(root)
        class_to_idx = {name: i for i, name in enumerate(classes)}
        self.classes = classes
        seen: set[tuple[int, int]] = set()  # (device, inode) of every file listed: each once
        skipped: dict[str, int] = {}
        listed = {}
        for split in ("test", "val"):  # held-out splits first: a file shared with train stays out
            folder = self.path / split
            if root != self.path and real_folder(folder):
                extra = sorted(set(sub_folders(folder)) - set(classes))
                if extra:
                    raise ValueError(f"{folder} has classes that train/ lacks: {extra}")
                listed[split] = list_images(folder, class_to_idx, seen, skipped)
        listed = {"train": list_images(root, class_to_idx, seen, skipped), **listed}
        if skipped:
            counts = ", ".join(f"{n} {what}" for what, n in skipped.items())
            print(
                f"note: {self.path}: skipped {counts} (each image is read once, from its own "
                "class folder)"
            )
        present = {label for _, label in listed["train"]}
        empty = [name for i, name in enumerate(classes) if i not in present]
        if empty:
            raise ValueError(
                f"{root}: class folders with no PNG or JPEG images: {', '.join(empty)}"
            )
        self.channels = self.check_readable([f for files in listed.values() for f, _ in files])
        return self.split(listed)

    def class_folders(self, root: Path) -> list[str]:
        """The class names (sub-folders) of `root`, at least two."""
        classes = sub_folders(root)
        if len(classes) < 2:
            found = f"only the class {classes[0]!r}" if classes else "no class sub-folders"
            raise ValueError(
                f"{root} holds {found}; put each class's images in a sub-folder of their own "
                f"({root}/<class>/*.png), two classes or more"
            )
        return classes

    def check_readable(self, files: list[str]) -> int:
        """Every file opens as an image (PIL reads the header only); 1 channel when all are
        grey, 3 otherwise."""
        unreadable, colour = [], False
        for file in files:
            try:
                with Image.open(file) as image:
                    colour = colour or image.mode not in GREY_MODES
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
                unreadable.append(str(Path(file).relative_to(self.path)))
        if unreadable:
            shown = ", ".join(unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
            raise ValueError(
                f"{self.path}: {len(unreadable)} file(s) are not readable PNG/JPEG images (or "
                f"larger than PIL's limit of {Image.MAX_IMAGE_PIXELS:,} pixels): {shown}"
            )
        return 3 if colour else 1

    def split(self, listed: dict[str, list[tuple[str, int]]]) -> dict[str, list]:
        """Splits without a folder of their own are carved from the training files (seeded)."""
        if len(listed) == len(SPLITS):
            return listed
        train = listed["train"]
        carve = split_indices(len(train), self.val_fraction, self.test_fraction, self.seed)
        files = {"train": [train[i] for i in carve["train"].tolist()]}
        for split in ("val", "test"):
            carved = [train[i] for i in carve[split].tolist()]
            if split in listed:  # a folder of its own: its share goes back to training
                files[split], files["train"] = listed[split], files["train"] + carved
            else:
                files[split] = carved
        for split, chosen in files.items():
            if not chosen:
                raise ValueError(
                    f"{self.path}: {len(train)} training images leave the {split} split empty; "
                    f"add images or a {split}/ folder"
                )
        return files

    # --- decoding ----------------------------------------------------------------------------
    def decoded_megabytes(self) -> float:
        """The float32 size of every split decoded."""
        count = sum(len(files) for files in self.files.values())
        return count * self.channels * self.image_size**2 * 4 / 2**20

    def decode_all(self, files: list[tuple[str, int]]) -> tuple[Tensor, Tensor]:
        """uint8 images (N, C, S, S) and int64 labels."""
        images, unreadable = [], []
        for file, _ in files:
            try:
                images.append(decode(file, self.channels, self.image_size))
            except (OSError, Image.DecompressionBombError):  # PIL: truncated, corrupt, too large
                unreadable.append(str(Path(file).relative_to(self.path)))
        if unreadable:
            raise ValueError(
                f"{self.path}: {len(unreadable)} file(s) could not be decoded: "
                f"{', '.join(unreadable[:5])}"
            )
        return torch.stack(images), torch.tensor([label for _, label in files])

    def setup(self, stage: str | None = None) -> None:
        if self.files:
            return
        self.files = self.find_files()
        self.in_memory = self.loader == "memory" or (
            self.loader == "auto" and self.decoded_megabytes() <= self.memory_limit_mb
        )
        if self.in_memory:
            decoded = {split: self.decode_all(files) for split, files in self.files.items()}
            self.mean, self.std = channel_stats(decoded["train"][0])
            self.splits = {
                split: (normalise(images, self.mean, self.std), labels)
                for split, (images, labels) in decoded.items()
            }
        else:
            order = torch.randperm(
                len(self.files["train"]), generator=torch.Generator().manual_seed(self.seed)
            )
            sample = [self.files["train"][i] for i in order[:STATS_SAMPLE].tolist()]
            self.mean, self.std = channel_stats(self.decode_all(sample)[0])
        self.image_normalisation = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        super().setup(stage)

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        return self.splits

    @property
    def spec(self) -> DataSpec:
        """Images (channels, image_size, image_size), one output per class."""
        self.setup()
        shape = (self.channels, self.image_size, self.image_size)
        return DataSpec(shape, len(self.classes), "classification")

    def _uses_memory(self) -> bool:
        return self.in_memory

    def _loader(self, split: str, shuffle: bool):
        self.setup()
        if self.in_memory:
            return super()._loader(split, shuffle)
        images = FolderImages(
            self.files[split], self.channels, self.image_size, self.mean, self.std
        )
        return self.torch_loader(images, shuffle)  # resumable mid-epoch when training


def real_folder(path: Path) -> bool:
    """A folder that is not a symbolic link (a link may lead back up: a loop)."""
    return path.is_dir() and not path.is_symlink()


def sub_folders(root: Path) -> list[str]:
    """The class names in `root` (sorted): its sub-folders, not hidden, not symbolic links."""
    try:
        return sorted(p.name for p in root.iterdir() if real_folder(p) and p.name[0] != ".")
    except OSError:
        return []


def list_images(
    root: Path,
    class_to_idx: dict[str, int],
    seen: set[tuple[int, int]],
    skipped: dict[str, int],
) -> list[tuple[str, int]]:
    """(file, class id) for the PNG/JPEG files under each class folder of `root`, sorted.
    Symbolic links (to files or folders) are not followed, nor are other non-regular files
    (pipes, devices) read; a file already in `seen` (the same inode: a hard link) is listed
    once. What is skipped is counted in `skipped`."""

    def skip(what: str) -> None:
        skipped[what] = skipped.get(what, 0) + 1

    files = []
    for name, label in sorted(class_to_idx.items()):
        folder = root / name
        if not real_folder(folder):
            continue
        for parent, folders, names in os.walk(folder):  # does not follow linked folders
            for sub in folders:
                if (Path(parent) / sub).is_symlink():
                    skip("linked folders")
            for file_name in sorted(names):
                path = Path(parent) / file_name
                if not file_name.lower().endswith(EXTENSIONS):
                    continue
                info = path.lstat()
                if stat.S_ISLNK(info.st_mode):
                    skip("linked files")
                elif not stat.S_ISREG(info.st_mode):
                    skip("non-regular files")
                elif (info.st_dev, info.st_ino) in seen:
                    skip("duplicate files")
                else:
                    seen.add((info.st_dev, info.st_ino))
                    files.append((str(path), label))
    return sorted(files)


def channel_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units."""
    pixels = images.transpose(0, 1).flatten(1).float() / 255
    return pixels.mean(1), pixels.std(1).clamp_min(1e-6)


def normalise(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 images -> float32 (x / 255 - mean) / std per channel."""
    return ((images.float() / 255 - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)).contiguous()
