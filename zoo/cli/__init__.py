"""The `zoo` command: `zoo train|compare|predict|export|sample|results ...`, one `main()` per
tool in this package; the root scripts (`python train.py ...`) call the same mains."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Callable
from typing import NoReturn

COMMANDS = {
    "train": "train one architecture or sweep several (Hydra overrides: model=cnn, -m ...)",
    "compare": "tables and curves of every finished run",
    "predict": "a trained classifier's predictions for images or a .npy file, as CSV",
    "export": "a trained model as ONNX, TorchScript or torch.export",
    "sample": "samples from a trained GAN, VAE or language model",
    "results": "the whole zoo over seeds, beside baselines: docs/results.md and .csv",
}


def usage() -> str:
    lines = [f"  zoo {name:<8} {what}" for name, what in COMMANDS.items()]
    return "usage: zoo COMMAND [key=value ...]   (zoo COMMAND --help)\n" + "\n".join(lines)


def main() -> None:
    """Dispatch `zoo COMMAND ...` to zoo.cli.<COMMAND>.main, which reads the rest of argv."""
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0 if len(sys.argv) >= 2 else 2)
    command = sys.argv[1]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [f"zoo {command}", *sys.argv[2:]]
    run(command)


def command_main(command: str) -> Callable[[], object]:
    """zoo.cli.<command>.main, imported with Python's cyclic garbage collector paused.

    torch (with torch._dynamo), Lightning and Hydra leave close to a million objects on import.
    The collector would traverse them again and again as they arrive, and once more at
    interpreter exit; `gc.freeze()` moves them out of every later collection instead (the little
    garbage the imports leave in cycles is never freed). Start and exit get seconds faster on a
    CPU (bench/RESULTS.md, fixed costs). What the command builds stays collectable: freezing it
    too at exit left a DDP process hung in its process group's teardown about one run in ten.
    """
    gc.disable()
    try:
        main = importlib.import_module(f"zoo.cli.{command}").main
    finally:
        gc.freeze()
        gc.enable()
    return main


def run(command: str) -> NoReturn:
    """Run `zoo COMMAND` (its main reads sys.argv) and exit with its status."""
    result = command_main(command)()
    raise SystemExit(result if isinstance(result, int) else 0)
