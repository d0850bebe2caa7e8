"""PNG grid of samples from a trained GAN: `python sample.py ckpt_path=... n=64 out=samples.png`."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torchvision.utils import save_image

import zoo
from zoo.tasks import Adversarial

USAGE = "usage: python sample.py ckpt_path=PATH [n=64] [nrow=8] [seed=0] [out=samples.png]"


def sample(
    ckpt_path: str, n: int = 64, nrow: int = 8, seed: int = 0, out: str = "samples.png"
) -> Path:
    """Load the GAN checkpoint at `ckpt_path`; save `n` samples as one PNG grid at `out`."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    model = zoo.load(path)  # CheckpointError (a ValueError): one line
    if not isinstance(model, Adversarial):
        raise ValueError(  # noqa: TRY004 - bad user input, reported like every other one
            f"{path} holds a {model.name}, not a GAN (no generator to sample from)"
        )
    model.eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        grid = model.grid(model.sample(n), nrow=nrow)
    destination = Path(out)
    destination.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, destination)
    return destination


def main(argv: list[str]) -> int:
    arguments = OmegaConf.to_container(OmegaConf.from_cli(argv))
    if "ckpt_path" not in arguments or set(arguments) - {"ckpt_path", "n", "nrow", "seed", "out"}:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        destination = sample(**arguments)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
