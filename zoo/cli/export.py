"""A trained task as a file that runs without the zoo: ONNX, TorchScript or torch.export.

What is exported is the task's `forward` with a dynamic batch dimension: a classifier's logits,
a GAN's generator (latent vectors -> images in the data's value range), a language model's
next-token logits for a window of token ids.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import zoo
from zoo.cli.options import Option, help_text, parse, wants_help
from zoo.cli.outputs import check_output, checkpoint_file, write_atomically
from zoo.tasks import Task

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "exported": ".pt2"}


def example_input(model: Task, batch: int = 2) -> Tensor:
    """A batch of `batch` inputs the task's forward takes (random, seeded)."""
    return model.example_input(batch, torch.Generator().manual_seed(batch))


def too_large_for_one_file(model: Task) -> bool:
    """Whether ONNX must keep the weights in a file of their own (protobuf's 2 GiB limit)."""
    return sum(p.numel() * p.element_size() for p in model.parameters()) > 2**31 - 2**27


def export(model: Task, format: str, out: str | Path) -> Path:
    """Write `model` (in eval mode) to `out` as `format` (see FORMATS), batch size dynamic."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    destination = Path(out)
    if format == "exported" and destination.suffix != ".pt2":
        raise ValueError(f"format=exported writes a .pt2 file (torch.export.save); got out={out}")
    model = model.eval().cpu()
    x = example_input(model)
    dynamic = ({0: torch.export.Dim("batch", min=1)},)
    return write_atomically(destination, lambda partial: write(model, format, x, dynamic, partial))


def write(model: Task, format: str, x: Tensor, dynamic: tuple, destination: Path) -> None:
    """Export `model` for example input `x` to `destination`; one ValueError line on failure."""
    try:
        # The exporters report progress and failed graphs on stdout and stderr; the caller gets
        # one line (the ValueError below) and the CLI its own summary.
        quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
        with quiet[0], quiet[1], torch.no_grad():
            if format == "onnx":  # torch.onnx's torch.export-based exporter
                torch.onnx.export(
                    model,
                    (x,),
                    destination,
                    dynamo=True,
                    input_names=["input"],
                    output_names=["output"],
                    dynamic_shapes=dynamic,
                    external_data=too_large_for_one_file(model),
                )
            else:
                program = torch.export.export(model, (x,), dynamic_shapes=dynamic)
                if format == "torchscript":  # traced from the exported graph: no Lightning in it
                    with warnings.catch_warnings():  # torch deprecates TorchScript; still asked
                        warnings.simplefilter("ignore", FutureWarning)
                        warnings.simplefilter("ignore", torch.jit.TracerWarning)
                        torch.jit.save(torch.jit.trace(program.module(), x), destination)
                else:
                    torch.export.save(program, destination)
    except Exception as error:  # noqa: BLE001 - the exporters raise many kinds; report one line
        cause = error.__cause__ or error  # torch.onnx wraps torch.export's own error
        reason = next((line for line in str(cause).splitlines() if line.strip()), repr(cause))
        reason = re.sub(r"\x1b\[[0-9;]*m", "", reason)  # no terminal colours in the line
        raise ValueError(f"could not export {model.name} as {format}: {reason}") from None


def run_exported(path: str | Path, format: str, x: Tensor) -> np.ndarray:
    """The exported file's output for `x`, run by onnxruntime, torch.jit or torch.export."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        if format == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(path)).eval()(x).numpy()
        return torch.export.load(str(path)).module()(x).numpy()


def max_difference(model: Task, path: str | Path, format: str, batch: int = 3) -> float:
    """Largest absolute difference between the exported file and PyTorch on a batch of a size
    other than the one exported with (so a fixed batch dimension fails here)."""
    x = example_input(model, batch)
    with torch.no_grad():
        expected = model.eval().cpu()(x).numpy()
    actual = run_exported(path, format, x)
    if actual.shape != expected.shape:
        raise ValueError(f"exported output has shape {actual.shape}, PyTorch {expected.shape}")
    return float(np.abs(actual - expected).max())


OPTIONS = {
    "ckpt_path": Option("str", help="a trained model's checkpoint", required=True),
    "format": Option("str", "onnx", f"one of {', '.join(FORMATS)}"),
    "out": Option("str", None, "the file to write (default: model.onnx, .pt or .pt2)"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse `key=value` options, export, check the file against PyTorch; one `error:` line and
    exit 2 on bad input."""
    argv = sys.argv[1:] if argv is None else argv
    if wants_help(argv):
        print(help_text("export", __doc__, OPTIONS))
        return 0
    logging.getLogger("torch").setLevel(logging.ERROR)  # the exporters' warnings: ours say it
    try:
        arguments = parse("export", argv, OPTIONS)
        format = arguments["format"]
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        path = Path(arguments["ckpt_path"])
        out = check_output(arguments["out"] or f"model{FORMATS[format]}", (path,))
        model = zoo.load(checkpoint_file(path))  # CheckpointError (a ValueError): one line
        out = export(model, format, out)
        difference = max_difference(model, out, format)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({model.name}, {format}); max abs difference vs PyTorch: {difference:.3g}")
    return 0
