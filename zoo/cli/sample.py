"""Samples from a trained model: a PNG grid from a GAN or a VAE, text from a language model.

python sample.py ckpt_path=GAN_OR_VAE.ckpt n=64 nrow=8 seed=0 out=PNG  (default: samples.png in
the checkpoint's run folder)
python sample.py ckpt_path=LM.ckpt prompt="def " length=300 temperature=0.8 top_k=20 seed=0
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torchvision.utils import save_image

import zoo
from zoo.cli.options import Option, help_text, parse, wants_help
from zoo.cli.outputs import check_output, checkpoint_file, write_atomically
from zoo.tasks import Task

# The options by what a task declares it samples (`Task.samples`).
KEYS = {
    "images": {"n", "nrow", "seed", "out"},
    "text": {"prompt", "length", "temperature", "top_k", "seed", "out"},
}
OPTIONS = {
    "ckpt_path": Option("str", help="a GAN's, VAE's or language model's checkpoint", required=True),
    "n": Option("int", 64, "images in the grid (GAN, VAE)", minimum=1),
    "nrow": Option("int", 8, "images per row of the grid (GAN, VAE)", minimum=1),
    "seed": Option("int", 0, "random seed: the same seed gives the same samples", minimum=0),
    "out": Option(
        "str",
        None,
        "the file to write (images: default <run folder>/samples.png; text: default printed)",
    ),
    "prompt": Option("str", None, "text the language model continues (default: a newline)"),
    "length": Option("int", 300, "characters to generate (language model)", minimum=1),
    # Below it, logits / temperature overflow float32 and sampling has no probabilities left.
    "temperature": Option(
        "float", 0.8, "sharpness of sampling (language model), > 0", minimum=1e-6
    ),
    "top_k": Option("int", None, "sample among the k most probable characters", minimum=1),
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
    return write_atomically(check_output(out), lambda path: save_image(grid, path))


def beside(ckpt_path: str) -> str:
    """samples.png in the checkpoint's run folder (the folder holding `checkpoints/`)."""
    folder = Path(ckpt_path).resolve().parent
    return str((folder.parent if folder.name == "checkpoints" else folder) / "samples.png")


def load(ckpt_path: str) -> Task:
    """The checkpoint's GAN, VAE or language model, in eval mode; else one ValueError line."""
    path = checkpoint_file(ckpt_path)
    model = zoo.load(path)  # CheckpointError (a ValueError): one line
    if model.samples not in KEYS:
        raise ValueError(
            f"{path} holds a {model.name}, not a GAN, a VAE or a language model: nothing to sample"
        )
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    """Parse `key=value` options, sample, write; one `error:` line and exit 2 on bad input."""
    argv = sys.argv[1:] if argv is None else argv
    if wants_help(argv):
        print(help_text("sample", __doc__, OPTIONS))
        return 0
    try:
        arguments = parse("sample", argv, OPTIONS)
        given = {a.partition("=")[0] for a in argv} - {"ckpt_path"}
        ckpt_path = arguments.pop("ckpt_path")
        out = arguments.pop("out") or None
        if out is not None:
            out = check_output(out, (ckpt_path,))
        model = load(ckpt_path)
        kind = model.samples
        unknown = given - KEYS[kind]
        if unknown:
            raise ValueError(
                f"{model.name} samples {kind}: it takes no {', '.join(sorted(unknown))}; it "
                f"takes {', '.join(sorted(KEYS[kind]))}"
            )
        options = {k: v for k, v in arguments.items() if k in KEYS[kind]}
        if kind == "images":
            out = out or check_output(beside(ckpt_path), (ckpt_path,))
            print(f"wrote {image_grid(model, out=out, **options)}")
            return 0
        options["prompt"] = options["prompt"] if options["prompt"] is not None else "\n"
        text = model.generate(**options)
        if out is None:
            print(text)
        else:
            write_atomically(out, lambda path: path.write_text(text, encoding="utf-8"))
            print(f"wrote {out}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
