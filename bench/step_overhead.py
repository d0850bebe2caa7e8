"""Where the zoo's per-step time goes: train.py's config built up one part at a time.

    python bench/step_overhead.py                 # digits MLP (the shortest step), best of 5
    python bench/step_overhead.py --family cnn --repeats 3
    python bench/step_overhead.py --device cuda   # on a GPU: trainer=gpu's settings

Each row adds one part of train.py's default config to the one above and reports milliseconds
per training step (steady state: epochs after the first, time between step ends, as in
throughput.py). The first row is throughput.py's raw PyTorch loop on the same model and data.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # throughput.py beside this file

from omegaconf import open_dict
from throughput import ClockCallback, StepClock, make_config, run_raw, versions

from zoo.run.training import build_run

# Each step adds the callbacks/settings named to everything above it.
STEPS = [
    ("Lightning loop alone (no callbacks, logger, progress bar; nothing logged)", {}),
    ("+ the zoo's step logging (torchmetrics means; self.log on logging steps)", {"log": True}),
    ("+ TensorBoard logger and LR monitor", {"logger": True, "callbacks": ["lr_monitor"]}),
    ("+ progress bar (refresh every 10 steps)", {"callbacks": ["progress_bar"]}),
    (
        "+ ModelCheckpoint, LastCheckpoint and RandomStates",
        {"callbacks": ["model_checkpoint", "last_checkpoint", "random_states"]},
    ),
    (
        "+ FiniteLossGuard and RunStats = train.py's config",
        {"callbacks": ["finite_loss", "run_stats"]},
    ),
]


def step_ms(family: str, epochs: int, parts: dict, device: str) -> float:
    """ms per training step of train.py's config reduced to `parts`."""
    with tempfile.TemporaryDirectory() as folder:
        config = make_config(family, "digits", device, Path(folder))
        with open_dict(config):
            config.trainer.max_epochs = epochs
            config.trainer.enable_progress_bar = "progress_bar" in parts["callbacks"]
            config.trainer.enable_model_summary = False
            config.trainer.enable_checkpointing = "model_checkpoint" in parts["callbacks"]
            config.trainer.default_root_dir = folder
            config.callbacks = {
                k: v for k, v in config.callbacks.items() if k in parts["callbacks"]
            }
            if not parts["logger"]:
                config.logger = None
        datamodule, model, trainer = build_run(config)
        if not parts["log"]:
            model.log_train_step = lambda values, *args, **kwargs: None
        clock = StepClock(device, warmup_steps=0, skip_epochs=1)
        trainer.callbacks.append(ClockCallback(clock))
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stderr(sink),
            contextlib.redirect_stdout(sink),
        ):
            trainer.fit(model, datamodule=datamodule)
    return datamodule.batch_size / clock.throughput * 1e3


def raw_ms(family: str, epochs: int, device: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        config = make_config(family, "digits", device, Path(folder))
        clock = StepClock(device, warmup_steps=0, skip_epochs=1)
        run_raw(config, clock, epochs, None, device)
    return config.data.batch_size / clock.throughput * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="mlp")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs per row")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    cumulative, rows = {"log": False, "logger": False, "callbacks": []}, []
    for name, added in STEPS:
        cumulative = {
            "log": cumulative["log"] or added.get("log", False),
            "logger": cumulative["logger"] or added.get("logger", False),
            "callbacks": cumulative["callbacks"] + added.get("callbacks", []),
        }
        rows.append((name, dict(cumulative)))
    best = {
        "raw PyTorch loop (throughput.py's)": float("inf"),
        **{name: float("inf") for name, _ in rows},
    }
    for _ in range(
        args.repeats
    ):  # rows interleaved, so a slow spell of the machine hits all of them
        best["raw PyTorch loop (throughput.py's)"] = min(
            best["raw PyTorch loop (throughput.py's)"],
            raw_ms(args.family, args.epochs, args.device),
        )
        for name, parts in rows:
            best[name] = min(best[name], step_ms(args.family, args.epochs, parts, args.device))
    print(versions())
    print(
        f"\n{args.family} on digits, {args.device}, batch 64, best of {args.repeats}\n\n"
        "| configuration | ms per step | added |\n|---|---|---|"
    )
    previous = None
    for name, ms in best.items():
        added = "" if previous is None else f"{ms - previous:+.2f}"
        print(f"| {name} | {ms:.2f} | {added} |")
        previous = ms


if __name__ == "__main__":
    main()
