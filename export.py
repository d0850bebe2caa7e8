"""A trained model as a file that runs without the zoo (dynamic batch dimension).

python export.py ckpt_path=best.ckpt format=onnx out=model.onnx
python export.py ckpt_path=best.ckpt format=torchscript out=model.pt
python export.py ckpt_path=best.ckpt format=exported out=model.pt2   (torch.export)
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

import zoo
from zoo.export import FORMATS, export, max_difference

USAGE = "usage: python export.py ckpt_path=PATH [format=onnx|torchscript|exported] [out=FILE]"
OPTIONS = {"ckpt_path", "format", "out"}


def main(argv: list[str]) -> int:
    logging.getLogger("torch").setLevel(logging.ERROR)  # the exporters' warnings: ours say it
    arguments = OmegaConf.to_container(OmegaConf.from_cli(argv))
    if "ckpt_path" not in arguments:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        unknown = set(arguments) - OPTIONS
        if unknown:
            raise ValueError(f"export.py takes no {', '.join(sorted(unknown))}; {USAGE}")
        format = str(arguments.get("format", "onnx"))
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        path = Path(str(arguments["ckpt_path"]))
        if not path.is_file():
            raise ValueError(f"no checkpoint at {path}")
        model = zoo.load(path)  # CheckpointError (a ValueError): one line
        out = export(model, format, arguments.get("out", f"model{FORMATS[format]}"))
        difference = max_difference(model, out, format)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({model.name}, {format}); max abs difference vs PyTorch: {difference:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
