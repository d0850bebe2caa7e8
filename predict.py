"""Predictions of a trained classifier for a folder of images or a .npy file, as CSV.

python predict.py ckpt_path=best.ckpt inputs=my_images/ out=preds.csv [top_k=3]
python predict.py ckpt_path=best.ckpt inputs=x.npy out=preds.csv   (N, *input shape)
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

import zoo
from zoo.predict import predict, read_inputs, rows, write_csv
from zoo.tasks import Supervised

USAGE = (
    "usage: python predict.py ckpt_path=PATH inputs=FOLDER|FILE.npy [out=preds.csv] "
    "[top_k=3] [batch_size=256]"
)
OPTIONS = {"ckpt_path", "inputs", "out", "top_k", "batch_size"}


def main(argv: list[str]) -> int:
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
        if not isinstance(model, Supervised):
            raise ValueError(  # noqa: TRY004 - bad user input, reported like every other one
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
