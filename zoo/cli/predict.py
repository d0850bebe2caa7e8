"""Predictions of a trained classifier (or regressor) for a folder of images or a .npy file,
through Lightning's `trainer.predict`, as CSV rows (never written over an input or a checkpoint)."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

import zoo
from zoo.cli.options import Option, help_text, parse, wants_help
from zoo.cli.outputs import check_output, check_regular, checkpoint_file, write_atomically
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
    candidates = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    files = [p for p in candidates if p.is_file()]  # not folders, pipes or devices
    if len(files) < len(candidates):
        print(
            f"note: skipped {len(candidates) - len(files)} entries of {folder} that are not "
            "regular files",
            file=sys.stderr,
        )
    if not files:
        raise ValueError(f"no image files in {folder}")
    transform = image_transform(model)
    mode = "L" if model.input_shape[0] == 1 else "RGB"
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                images.append(transform(image.convert(mode)))
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
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
    if array.size == 0:
        raise ValueError(f"{path} holds no inputs (an empty array of shape {array.shape})")
    if array.shape[1:] != model.input_shape:
        raise ValueError(
            f"{path} holds an array of shape {array.shape}; {model.name} takes "
            f"(N, {', '.join(map(str, model.input_shape))})"
        )
    vocab_size = model.hparams.get("vocab_size")
    integer_ids = vocab_size is not None
    if integer_ids and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path} must hold integer token ids for {model.name}")
    if integer_ids and (array.min() < 0 or array.max() >= vocab_size):
        bad = int(array.min()) if array.min() < 0 else int(array.max())
        raise ValueError(f"{path} holds token id {bad}; {model.name} knows ids 0-{vocab_size - 1}")
    if not integer_ids and not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{path} holds {array.dtype} values, not numbers")
    if not integer_ids and not np.isfinite(array).all():
        first = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(
            f"{path} holds a non-finite value ({array[tuple(first)]}) at index "
            f"{tuple(int(i) for i in first)}; inputs must be finite numbers"
        )
    tensor = torch.from_numpy(array).to(torch.long if integer_ids else torch.float32)
    return [f"{path.name}[{i}]" for i in range(len(tensor))], tensor


def read_inputs(inputs: str | Path, model: Supervised) -> tuple[list[str], Tensor]:
    """Names and prepared inputs from a folder of images or a .npy file."""
    path = Path(inputs)
    if path.is_dir():
        return read_images(path, model)
    if path.suffix == ".npy":
        check_regular(path, "inputs")
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


def write_csv(table: list[dict], out: str | Path, inputs: tuple[str | Path, ...] = ()) -> Path:
    """The rows as a CSV file with a header, written atomically; never over one of `inputs`
    or a checkpoint."""

    def write(path: Path) -> None:
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)

    return write_atomically(check_output(out, inputs), write)


OPTIONS = {
    "ckpt_path": Option("str", help="a classifier's or regressor's checkpoint", required=True),
    "inputs": Option(
        "str", help="a folder of images or a .npy array (N, *input shape)", required=True
    ),
    "out": Option("str", "preds.csv", "the CSV file to write"),
    "top_k": Option("int", 3, "classes listed per input, most probable first", minimum=1),
    "batch_size": Option("int", 256, "inputs per forward pass", minimum=1),
}


def main(argv: list[str] | None = None) -> int:
    """Parse `key=value` options, predict, write the CSV; one `error:` line and exit 2 on bad
    input, before anything is written."""
    argv = sys.argv[1:] if argv is None else argv
    if wants_help(argv):
        print(help_text("predict", __doc__, OPTIONS))
        return 0
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no GPU/TPU banner
    try:
        arguments = parse("predict", argv, OPTIONS)
        path, inputs = Path(arguments["ckpt_path"]), Path(arguments["inputs"])
        out = check_output(arguments["out"], (path, inputs))
        checkpoint_file(path)
        model = zoo.load(path)  # CheckpointError (a ValueError): one line
        if not model.predicts:
            raise ValueError(
                f"{path} holds a {model.name}, not a classifier or regressor; "
                "sample.py draws samples from GANs and language models"
            )
        if inputs.is_dir() and model.image_normalisation is None:
            print(
                f"note: {path} records no image normalisation (saved before predict.py "
                "existed, or without a zoo data module); images are only scaled to [0, 1]",
                file=sys.stderr,
            )
        names, x = read_inputs(inputs, model)
        outputs = predict(model, x, arguments["batch_size"])
        if not torch.isfinite(outputs).all():
            bad = names[int((~torch.isfinite(outputs)).flatten(1).any(1).nonzero()[0])]
            raise ValueError(f"{model.name} gives non-finite outputs for {bad}; nothing written")
        out = write_csv(rows(model, names, outputs, arguments["top_k"]), out, (path, inputs))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {len(names)} predictions by {model.name}")
    return 0
