"""Samples from a trained model: a PNG grid from a GAN or a VAE, text from a language model.

python sample.py ckpt_path=GAN_OR_VAE.ckpt n=64 nrow=8 seed=0 out=PNG  (default: samples.png in
the checkpoint's run folder)
python sample.py ckpt_path=LM.ckpt prompt="def " length=300 temperature=0.8 top_k=20 seed=0
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torchvision.utils import save_image

import zoo
from zoo.tasks import Task

USAGE = (
    "usage: python sample.py ckpt_path=PATH [n=64] [nrow=8] [seed=0] [out=<run>/samples.png]  "
    "(GAN, VAE)\n"
    "       python sample.py ckpt_path=PATH [prompt=TEXT] [length=300] [temperature=0.8] "
    "[top_k=K] [seed=0] [out=FILE]  (language model)"
)
# The options by what a task declares it samples (`Task.samples`).
OPTIONS = {
    "images": {"n", "nrow", "seed", "out"},
    "text": {"prompt", "length", "temperature", "top_k", "seed", "out"},
}


def image_grid(
    model: Task,
    n: int = 64,
    nrow: int = 8,
    seed: int = 0,
    out: str = "samples.png",
) -> Path:
    """`n` samples of a GAN or a VAE as one PNG grid at `out`."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    torch.manual_seed(seed)
    with torch.no_grad():
        grid = model.grid(model.sample(n), nrow=nrow)
    destination = Path(out)
    destination.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, destination)
    return destination


def beside(ckpt_path: str) -> str:
    """samples.png in the checkpoint's run folder (the folder holding `checkpoints/`)."""
    folder = Path(ckpt_path).resolve().parent
    return str((folder.parent if folder.name == "checkpoints" else folder) / "samples.png")


def load(ckpt_path: str) -> Task:
    """The checkpoint's GAN, VAE or language model, in eval mode; else one ValueError line."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    model = zoo.load(path)  # CheckpointError (a ValueError): one line
    if model.samples not in OPTIONS:
        raise ValueError(
            f"{path} holds a {model.name}, not a GAN, a VAE or a language model: nothing to sample"
        )
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    arguments = OmegaConf.to_container(OmegaConf.from_cli(argv))
    if "ckpt_path" not in arguments:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        ckpt_path = arguments.pop("ckpt_path")
        model = load(ckpt_path)
        kind = model.samples
        unknown = set(arguments) - OPTIONS[kind]
        if unknown:
            raise ValueError(
                f"{model.name} takes no {', '.join(sorted(unknown))}; it takes "
                f"{', '.join(sorted(OPTIONS[kind]))}"
            )
        if kind == "images":
            arguments.setdefault("out", beside(ckpt_path))
            print(f"wrote {image_grid(model, **arguments)}")
            return 0
        out = arguments.pop("out", None)
        if "prompt" in arguments:
            arguments["prompt"] = str(arguments["prompt"])
        text = model.generate(**arguments)
        if out is None:
            print(text)
        else:
            Path(out).write_text(text, encoding="utf-8")
            print(f"wrote {out}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
