"""What `data.augment=true` costs: training samples/s with and without it, side by side.

    python bench/augment.py                 # CPU (and the GPU when present); about a minute
    python bench/augment.py --quick         # one repeat: a smoke run

The CNN (and the MLP, whose steps are cheaper, so the augmentation weighs more) on CIFAR-shaped
synthetic tensors (train_size x 3 x 32 x 32, in memory) through `zoo.run.training.build_run` +
`trainer.fit`, train.py's own path, with `augment` off and on; the two alternate in one process
and the best of the repeats is kept. Steady-state samples/s as in bench/throughput.py (time
between the ends of training steps, the first steps of each epoch excluded). Then the
augmentation alone: milliseconds per 128-image batch of `crop_and_flip` against
torchvision.transforms.v2's RandomCrop + RandomHorizontalFlip applied image by image (v2
applied to the whole batch draws one crop for all of its images). Prints markdown.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's zoo
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from omegaconf import OmegaConf, open_dict
from throughput import StepClock, make_config, run_lightning, versions
from torchvision.transforms import v2

from zoo.data.augment import crop_and_flip


def samples_per_second(family: str, device: str, augment: bool, train_size: int) -> float:
    """One run through train.py's path; steady-state training samples/s."""
    with tempfile.TemporaryDirectory() as folder:
        config = make_config(family, "mnist-shaped", device, Path(folder))
        with open_dict(config):
            config.data = OmegaConf.create(
                {
                    "_target_": "throughput.SyntheticImages",
                    "train_size": train_size,
                    "shape": [3, 32, 32],
                    "batch_size": 128,
                    "augment": augment,
                }
            )
        clock = StepClock(device, warmup_steps=5, skip_epochs=0)
        run_lightning(config, clock, epochs=2, steps=None)
        return clock.throughput


def batch_milliseconds(function, images: torch.Tensor, device: str, repeats: int = 20) -> float:
    """Best-of-3 mean milliseconds of `function(images)`."""
    best = float("inf")
    for _ in range(3):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            function(images)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / repeats * 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat")
    parser.add_argument("--train-size", type=int, default=4096)
    arguments = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 1 if not torch.cuda.is_available() else 8))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    repeats = 1 if arguments.quick else 3
    print(versions(), "\n")
    print("| device | family | augment off samples/s | augment on samples/s | ratio on/off |")
    print("|---|---|---:|---:|---:|")
    for device in devices:
        for family in ("cnn", "mlp"):
            best = {False: 0.0, True: 0.0}
            for _ in range(repeats):
                for augment in (False, True):
                    rate = samples_per_second(family, device, augment, arguments.train_size)
                    best[augment] = max(best[augment], rate)
            ratio = best[True] / best[False]
            print(f"| {device} | {family} | {best[False]:,.0f} | {best[True]:,.0f} | {ratio:.2f} |")
    print("\n| device | crop_and_flip, ms/batch of 128 | v2 per image, ms/batch | speed-up |")
    print("|---|---:|---:|---:|")
    per_image = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])
    for device in devices:
        images = torch.randn(128, 3, 32, 32, device=device)
        ours = batch_milliseconds(lambda x: crop_and_flip(x, 4), images, device)
        theirs = batch_milliseconds(
            lambda x: torch.stack([per_image(i) for i in x]), images, device
        )
        print(f"| {device} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.1f}x |")


if __name__ == "__main__":
    main()
