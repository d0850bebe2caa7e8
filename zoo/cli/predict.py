"""Predictions of a trained classifier (or regressor) for a folder of images or a .npy file,
through Lightning's `trainer.predict`, as CSV rows."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

import zoo
from zoo.tasks import Supervised

IMAGE_SUFFIXES = {suffix for suffix, _ in Image.registered_extensions().items()}


def image_transform(model: Supervised) -> v2.Compose:
    """PIL image -> the tensor the model was trained on: its size and channels, pixels scaled
    to [0, 1] and normalised with the training data's statistics (recorded in the checkpoint)."""
    channels, height, width = model.input_shape
    steps = [
        v2.PILToTensor(),
        v2.Resize((height, width), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
    ]
    if model.image_normalisation:
        mean, std = model.image_normalisation["mean"], model.image_normalisation["std"]
        steps.append(v2.Normalize(mean * (channels // len(mean)), std * (channels // len(std))))
    return v2.Compose(steps)


def read_images(folder: Path, model: Supervised) -> tuple[list[str], Tensor]:
    """Every image file in `folder` (by name), prepared for `model`; one ValueError line naming
    the first file that cannot be read."""
    if len(model.input_shape) != 3 or model.input_shape[0] not in (1, 3):
        raise ValueError(
            f"{model.name} takes inputs of shape {model.input_shape}, not images; "
            "give inputs=FILE.npy with an array of shape (N, "
            f"{', '.join(map(str, model.input_shape))})"
        )
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no image files in {folder}")
    transform = image_transform(model)
    mode = "L" if model.input_shape[0] == 1 else "RGB"
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                images.append(transform(image.convert(mode)))
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise ValueError(f"cannot read {path} as an image: {error}") from None
    return [p.name for p in files], torch.stack(images)


def read_array(path: Path, model: Supervised) -> tuple[list[str], Tensor]:
    """A .npy array of inputs exactly as the data module serves them, (N, *input_shape)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path} as a .npy array: {error}") from None
    if array.shape == model.input_shape:
        array = array[None]
    if array.shape[1:] != model.input_shape:
        raise ValueError(
            f"{path} holds an array of shape {array.shape}; {model.name} takes "
            f"(N, {', '.join(map(str, model.input_shape))})"
        )
    integer_ids = model.hparams.get("vocab_size") is not None
    if integer_ids and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path} must hold integer token ids for {model.name}")
    tensor = torch.from_numpy(array).to(torch.long if integer_ids else torch.float32)
    return [f"{path.name}[{i}]" for i in range(len(tensor))], tensor


def read_inputs(inputs: str | Path, model: Supervised) -> tuple[list[str], Tensor]:
    """Names and prepared inputs from a folder of images or a .npy file."""
    path = Path(inputs)
    if path.is_dir():
        return read_images(path, model)
    if path.suffix == ".npy" and path.is_file():
        return read_array(path, model)
    raise ValueError(f"inputs must be a folder of images or a .npy file; got {path}")


def predict(model: Supervised, x: Tensor, batch_size: int = 256) -> Tensor:
    """The model's outputs for `x`, batch by batch through `trainer.predict`."""
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(TensorDataset(x), batch_size=batch_size)
    return torch.cat(trainer.predict(model, loader)).float().cpu()


def rows(model: Supervised, names: list[str], outputs: Tensor, top_k: int = 3) -> list[dict]:
    """One CSV row per input: `file`, `prediction`, and for classifiers the `top_k` classes
    (`top2`, `top3`, ...) with their probabilities (`top1_probability`, ...)."""
    if model.kind == "regression":
        return [
            {"file": name, "prediction": " ".join(f"{v:.6g}" for v in output.tolist())}
            for name, output in zip(names, outputs, strict=True)
        ]
    probabilities, classes = outputs.softmax(-1).topk(min(top_k, outputs.shape[-1]))
    table = []
    for name, p, c in zip(names, probabilities.tolist(), classes.tolist(), strict=True):
        row = {"file": name, "prediction": c[0], "top1_probability": f"{p[0]:.6f}"}
        for rank in range(1, len(c)):
            row[f"top{rank + 1}"] = c[rank]
            row[f"top{rank + 1}_probability"] = f"{p[rank]:.6f}"
        table.append(row)
    return table


def write_csv(table: list[dict], out: str | Path) -> Path:
    """The rows as a CSV file with a header."""
    destination = Path(out)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with destination.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return destination


USAGE = (
    "usage: python predict.py ckpt_path=PATH inputs=FOLDER|FILE.npy [out=preds.csv] "
    "[top_k=3] [batch_size=256]"
)
OPTIONS = {"ckpt_path", "inputs", "out", "top_k", "batch_size"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no GPU/TPU banner
    arguments = OmegaConf.to_container(OmegaConf.from_cli(argv))
    if not {"ckpt_path", "inputs"} <= set(arguments):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        unknown = set(arguments) - OPTIONS
        if unknown:
            raise ValueError(f"predict.py takes no {', '.join(sorted(unknown))}; {USAGE}")
        for key in ("top_k", "batch_size"):
            value = arguments.get(key, 1)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
        path = Path(str(arguments["ckpt_path"]))
        if not path.is_file():
            raise ValueError(f"no checkpoint at {path}")
        model = zoo.load(path)  # CheckpointError (a ValueError): one line
        if not model.predicts:
            raise ValueError(
                f"{path} holds a {model.name}, not a classifier or regressor; "
                "sample.py draws samples from GANs and language models"
            )
        if Path(str(arguments["inputs"])).is_dir() and model.image_normalisation is None:
            print(
                f"note: {path} records no image normalisation (saved before predict.py "
                "existed, or without a zoo data module); images are only scaled to [0, 1]",
                file=sys.stderr,
            )
        names, x = read_inputs(str(arguments["inputs"]), model)
        outputs = predict(model, x, arguments.get("batch_size", 256))
        out = write_csv(
            rows(model, names, outputs, arguments.get("top_k", 3)),
            arguments.get("out", "preds.csv"),
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {len(names)} predictions by {model.name}")
    return 0
