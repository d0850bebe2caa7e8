"""Image folders written with PIL for the tests: mixed PNG/JPEG, sizes, grey and colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZES = ((12, 12), (20, 14), (9, 16))


def picture(label: int, index: int, colour: bool, size: tuple[int, int]) -> Image.Image:
    """Class 0 bright on the left, class 1 bright at the top, class 2 a bright centre; noise."""
    width, height = size
    rng = np.random.default_rng(100 * label + index)
    pixels = rng.integers(0, 60, (height, width)).astype(np.uint8)
    if label == 0:
        pixels[:, : width // 2] += 180
    elif label == 1:
        pixels[: height // 2] += 180
    else:
        pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] += 180
    image = Image.fromarray(pixels, "L")
    return image.convert("RGB") if colour else image


def write_folder(root: Path, classes: int = 3, per_class: int = 12, colour: bool = True) -> Path:
    """root/class_<k>/<i>.png|jpg, every third image in colour (when `colour`), mixed sizes."""
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = picture(label, i, colour and i % 3 == 0, SIZES[i % len(SIZES)])
            image.save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root
