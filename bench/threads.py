"""Fit time by torch CPU thread count, on an idle machine and beside one busy process.

    python bench/threads.py            # a few minutes on 2 cores
    python bench/threads.py --quick    # one repeat

Each case is train.py's own path (zoo.run.training.build_run + fit, logger and checkpoints off) with
`threads=1`, `threads=<all cores>` and `threads=auto`; best of the repeats, the paths
interleaved. "Loaded" runs one other process spinning on one core for the whole measurement, as a
second run or a browser would. Prints a markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's zoo

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from zoo.registry import CONFIG_DIR
from zoo.run.resolvers import register
from zoo.run.training import build_run, cpu_threads

register()  # conf/'s resolvers, as `zoo train` registers them

CASES = {
    "cnn on digits, 20 epochs": ["model=cnn", "trainer.max_epochs=20"],
    "gpt on text, 40 steps": ["model=gpt", "data=text", "trainer.max_steps=40"],
}
QUIET = [
    "~logger",
    "~callbacks.progress_bar",
    "~callbacks.model_checkpoint",
    "~callbacks.last_checkpoint",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_checkpointing=false",
    "+trainer.limit_val_batches=0",
    "trainer.enable_model_summary=false",
]


def fit_seconds(overrides: list[str], threads: int | str, folder: str) -> tuple[float, int]:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        config = compose("config", overrides=[*overrides, *QUIET, f"threads={threads}"])
    with open_dict(config):
        config.paths.output_dir = folder
        config.paths.data_dir = str(Path(folder) / "data")
    datamodule, model, trainer = build_run(config)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    return time.perf_counter() - start, torch.get_num_threads()


def measure(repeats: int) -> list[tuple[str, str, dict[str, float]]]:
    cores = len(os.sched_getaffinity(0))
    rows = []
    for loaded in (False, True):
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
        try:
            for case, overrides in CASES.items():
                best: dict[str, float] = {}
                for _ in range(repeats):
                    for threads in (1, cores, "auto"):
                        with tempfile.TemporaryDirectory() as folder:
                            seconds, used = fit_seconds(overrides, threads, folder)
                        label = f"auto ({used})" if threads == "auto" else str(threads)
                        best[label] = min(best.get(label, float("inf")), seconds)
                rows.append((case, "beside 1 busy process" if loaded else "idle", best))
        finally:
            if spinner:
                spinner.kill()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat")
    args = parser.parse_args()
    rows = measure(1 if args.quick else 2)
    cores = len(os.sched_getaffinity(0))
    print(f"## CPU threads ({datetime.date.today()})\n")
    print(
        f"- machine: {platform.processor() or platform.machine()}, {cores} cores usable, "
        f"auto = {cpu_threads('auto', type('T', (), {'num_devices': 1})())} thread(s); "
        f"torch {torch.__version__}\n"
    )
    labels = list(rows[0][2])
    print("| case | machine | " + " | ".join(f"{t} threads, s" for t in labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for case, machine, best in rows:
        print(f"| {case} | {machine} | " + " | ".join(f"{best[t]:.2f}" for t in labels) + " |")


if __name__ == "__main__":
    main()
