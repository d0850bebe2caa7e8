"""What a `python train.py` run pays besides its training steps, piece by piece.

    python bench/fixed_costs.py                      # the nanoGPT-comparison GPT (300 steps)
    python bench/fixed_costs.py --repeats 5 -- model=cnn data=digits trainer.max_epochs=3

Start-up imports: train.py's imports against what a plain PyTorch loop imports (torch, numpy and
an optimizer, which loads torch._dynamo), each in a fresh process that then exits, alternating;
and train.py's imports without zoo.cli.command_main's paused and frozen garbage collector. The
rest: one run of train.py's own path (`zoo.run.training.train`, in this process, after the
imports), timing each piece that is not a training step: building the run, the sanity check, the
model summary, the network graph, the data's reference points, validation, generated text
samples, checkpoint files, the test stage. CPU seconds (this process's, one torch thread) beside
wall seconds: on a shared machine the CPU figure is the steadier one.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's zoo

GPT_RUN = [
    "model=gpt",
    "data=text",
    "data.block_size=64",
    "data.batch_size=12",
    "data.steps_per_epoch=300",
    "trainer.max_epochs=1",
    "model.depth=4",
    "model.heads=4",
    "model.width=128",
    "model.dropout=0",
    "data.max_chars=86000",
]
PLAIN = "import torch, numpy; torch.optim.AdamW([torch.zeros(1, requires_grad=True)])"
CHECKOUT = f"import sys; sys.path.insert(0, {str(ROOT)!r})"
IMPORTS = {
    "plain loop's imports": PLAIN,
    "train.py's imports": f"{CHECKOUT}; from zoo.cli import command_main; command_main('train')",
    "train.py's imports, collector not paused": f"{CHECKOUT}; import zoo.cli.train",
}


def child_seconds(code: str) -> tuple[float, float]:
    """Wall and CPU seconds of a fresh `python -c code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_costs(repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds of each import set, alternating."""
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _ in range(repeats):
        for name, code in IMPORTS.items():
            runs[name].append(child_seconds(code))
    return {
        name: tuple(statistics.median(v[i] for v in values) for i in range(2))
        for name, values in runs.items()
    }


class Clock:
    """Wall and CPU seconds per named piece, summed over calls (outermost call only)."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.depth: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def timing(self, name: str) -> Iterator[None]:
        self.depth[name] += 1
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.depth[name] -= 1
            if not self.depth[name]:
                self.seconds[name][0] += time.perf_counter() - wall
                self.seconds[name][1] += time.process_time() - cpu

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        """Time every call of `owner.attribute` as `name`."""
        original: Callable = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.timing(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)


def run_costs(overrides: list[str]) -> tuple[dict[str, list[float]], float]:
    """One train.py run in this process, its pieces timed; and its training-step seconds."""
    import lightning as L
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from lightning.pytorch.callbacks import ModelSummary
    from lightning.pytorch.loggers import TensorBoardLogger
    from lightning.pytorch.loops import _EvaluationLoop
    from omegaconf import open_dict

    from zoo.data.text import TextDataModule
    from zoo.registry import CONFIG_DIR
    from zoo.run import training
    from zoo.run.resolvers import register
    from zoo.tasks.language_model import LanguageModel

    register()
    clock = Clock()
    clock.wrap(training, "build_run", "build the run (data, model, trainer)")
    clock.wrap(ModelSummary, "on_fit_start", "model summary")
    clock.wrap(TensorBoardLogger, "log_graph", "network graph (TensorBoard GRAPHS)")
    clock.wrap(TextDataModule, "reference_bits_per_char", "reference points (xz, unigram)")
    clock.wrap(LanguageModel, "generate", "text samples (TEXT tab)")
    clock.wrap(L.Trainer, "save_checkpoint", "checkpoint files")
    clock.wrap(L.Trainer, "test", "test stage (best checkpoint, test split)")
    clock.wrap(_EvaluationLoop, "run", "sanity check + validation (incl. samples)")
    clock.wrap(L.Trainer, "fit", "fit")
    clock.wrap(training, "train", "train() in all")
    folder = tempfile.TemporaryDirectory(prefix="zoo-fixed-costs-")
    logs = folder.name
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        config = compose("config", overrides=[*overrides, "threads=1"], return_hydra_config=True)
    with open_dict(config):
        config.hydra.runtime.output_dir = logs
        config.paths.output_dir = logs
        config.paths.log_dir = logs
    HydraConfig.instance().set_config(config)  # as train.py's @hydra.main does
    with open_dict(config):
        del config["hydra"]
    with folder:
        training.train(config)
    seconds = dict(clock.seconds)
    inside = [
        "sanity check + validation (incl. samples)",
        "model summary",
        "network graph (TensorBoard GRAPHS)",
        "reference points (xz, unigram)",
        "checkpoint files",
    ]
    fit = seconds["fit"]
    steps = [fit[i] - sum(seconds.get(name, [0, 0])[i] for name in inside) for i in range(2)]
    return seconds, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="import measurements each")
    parser.add_argument("overrides", nargs="*", help="train.py overrides (default: the GPT)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    imports = import_costs(args.repeats)
    overrides = args.overrides or GPT_RUN
    seconds, steps = run_costs(overrides)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n- date: {now}; {platform.machine()}, {os.cpu_count()} cores, 1 torch thread, load "
        f"average {os.getloadavg()[0]:.1f}; torch {torch.__version__}\n"
        f"- run: `python train.py {' '.join(overrides)}`\n"
    )
    print("| piece | wall s | CPU s |\n|---|---:|---:|")
    for name, (wall, cpu) in imports.items():
        print(f"| {name} (fresh process, median of {args.repeats}) | {wall:.2f} | {cpu:.2f} |")
    order = [name for name in seconds if name not in ("fit", "train() in all")]
    for name in order:
        print(f"| {name} | {seconds[name][0]:.2f} | {seconds[name][1]:.2f} |")
    print(f"| training steps (fit less the pieces above) | {steps[0]:.2f} | {steps[1]:.2f} |")
    for name in ("fit", "train() in all"):
        print(f"| {name} | {seconds[name][0]:.2f} | {seconds[name][1]:.2f} |")


if __name__ == "__main__":
    main()
