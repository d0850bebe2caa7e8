"""Image models on MNIST-shaped and CIFAR-shaped real images, read from their release formats.

    python bench/image_sizes.py                      # vit and cnn, 20 epochs each (a few minutes)
    python bench/image_sizes.py --models vit --epochs 5

No MNIST or CIFAR-10 can be downloaded here, so the embedded digits (1,797 real 8x8 images) are
upscaled (bilinear) to 28x28 and written as MNIST's IDX files, and to 3x32x32 (grey in all three
channels) as CIFAR-10's pickled batches; train.py's `data=mnist` / `data=cifar10` then read them
with torchvision's own dataset classes. CIFAR-10's md5 table is emptied in this process, as in
tests/test_datasets.py, since the files cannot match the real release's checksums.
"""

from __future__ import annotations

import argparse
import pickle
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torchvision import datasets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's zoo

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from zoo.registry import CONFIG_DIR
from zoo.run.resolvers import register
from zoo.run.training import train

register()  # conf/'s resolvers, as `zoo train` registers them

def digits_at(size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The digits as uint8 images (N, channels, size, size), upscaled from 8x8."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, channels, -1, -1)
    return images.numpy().copy(), digits.target.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    path.write_bytes(header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def write_mnist(root: Path, test_size: int) -> None:
    images, labels = digits_at(28, 1)
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for prefix, part in (("train", slice(test_size, None)), ("t10k", slice(None, test_size))):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images[part, 0])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels[part])


def write_cifar10(root: Path, test_size: int) -> None:
    images, labels = digits_at(32, 3)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_images, train_labels = images[test_size:], labels[test_size:]
    batches = [(train_images[i::5], train_labels[i::5]) for i in range(5)]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, (x, y) in zip(names, [*batches, (images[:test_size], labels[:test_size])]):
        batch = {"batch_label": name, "data": x.reshape(len(x), -1), "labels": y.tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [str(i) for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    cifar = datasets.CIFAR10
    cifar.train_list = [[name, None] for name, _ in cifar.train_list]
    cifar.test_list = [[name, None] for name, _ in cifar.test_list]
    cifar.meta = {**cifar.meta, "md5": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="vit,cnn")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_mnist(root / "data", test_size=360)
        write_cifar10(root / "data", test_size=360)
        for data in ("mnist", "cifar10"):
            for model in args.models.split(","):
                with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                    config = compose(
                        "config",
                        overrides=[
                            f"model={model}",
                            f"data={data}",
                            "data.val_size=270",
                            "data.batch_size=64",
                            f"trainer.max_epochs={args.epochs}",
                            "~callbacks.progress_bar",
                            "+trainer.enable_progress_bar=false",
                        ],
                    )
                with open_dict(config):
                    config.paths.output_dir = str(root / "logs" / f"{model}-{data}")
                    config.paths.data_dir = str(root / "data")
                    config.data.data_dir = str(root / "data")
                train(config)


if __name__ == "__main__":
    main()
