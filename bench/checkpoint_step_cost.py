"""Per-step cost of LastCheckpoint and of the in-memory loader: this checkout against another
commit's, alternating in one process on one thread.

    git worktree add /tmp/baseline f3f66d7
    python bench/checkpoint_step_cost.py --baseline /tmp/baseline

Microseconds per training step of LastCheckpoint.on_train_batch_end (one process, a trainer
that is fitting, no write due) and per batch of a shuffled InMemoryLoader over digits-sized
tensors; best and median of `--repeats` rounds, the two versions alternating in each round.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from lightning.pytorch.trainer.states import TrainerFn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zoo.data.base as this_base
import zoo.run.callbacks as this_callbacks


def load(name: str, path: Path):
    """A module from another checkout's file (it imports the rest of the zoo from this one)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def callback_us(module, steps: int = 200_000) -> float:
    callback = module.LastCheckpoint(every_n_seconds=60)
    trainer = SimpleNamespace(
        global_step=0,
        world_size=1,
        state=SimpleNamespace(fn=TrainerFn.FITTING),
        sanity_checking=False,
        fast_dev_run=0,
        strategy=SimpleNamespace(broadcast=lambda decision: decision),
    )
    start = time.perf_counter()
    for step in range(1, steps + 1):
        trainer.global_step = step
        callback.on_train_batch_end(trainer)
    return (time.perf_counter() - start) / steps * 1e6


def loader_us(module, epochs: int = 300) -> float:
    inputs, targets = torch.randn(1437, 64), torch.randint(0, 10, (1437,))
    loader = module.InMemoryLoader(inputs, targets, batch_size=64, shuffle=True)
    start, batches = time.perf_counter(), 0
    for _ in range(epochs):
        for _batch in loader:
            batches += 1
    return (time.perf_counter() - start) / batches * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="another commit's checkout")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base_callbacks = load("baseline_callbacks", args.baseline / "zoo/run/callbacks.py")
    base_data = load("baseline_base", args.baseline / "zoo/data/base.py")
    rows = {
        "LastCheckpoint, baseline": (callback_us, base_callbacks),
        "LastCheckpoint, this checkout": (callback_us, this_callbacks),
        "InMemoryLoader batch, baseline": (loader_us, base_data),
        "InMemoryLoader batch, this checkout": (loader_us, this_base),
    }
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, (measure, module) in rows.items():
            times[name].append(measure(module))
    print("| per step | best (µs) | median (µs) |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.2f} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
