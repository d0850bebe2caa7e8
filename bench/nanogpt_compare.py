"""The zoo's GPT against nanoGPT's own train.py on the same model, steps and text, side by side.

    python bench/nanogpt_compare.py --nanogpt /tmp/nanogpt --pairs 3
    python bench/nanogpt_compare.py --nanogpt /tmp/nanogpt --pairs 3 --compile   # + model.compile
    python bench/nanogpt_compare.py --nanogpt /tmp/nanogpt --pairs 3 --fused     # + fused AdamW

nanoGPT is not a dependency of the zoo: bring a checkout of github.com/karpathy/nanoGPT
(`--nanogpt`). The shape is nanoGPT's CPU quick start (README: 4 layers, 4 heads, 128 wide,
block 64, batch 12, dropout 0, no compile) for `--steps` optimizer steps, and the zoo runs with
nanoGPT's optimizer and schedule (NANOGPT_OPTIMIZER below: zoo overrides, not zoo defaults).
Both train on the same characters: the zoo's default corpus (Python's own sources) cut to
`--chars` characters, split by the zoo's TextDataModule; nanoGPT gets the zoo's train split as
train.bin and its validation split as val.bin, in the zoo's vocabulary (its own prepare.py does
the same for Shakespeare).

Each pair runs both as separate processes (one torch thread each, `OMP_NUM_THREADS=1`), in
alternating order, and records: the whole process's wall time and CPU time (the steadier figure
on a shared machine; it includes compiler subprocesses); steady-state training tokens/s
(nanoGPT: its median iteration time; the zoo: its median step time between the training losses
it logs, from its first logged step on, after any compile); and the validation loss after the
last step (nanoGPT: its estimate_loss on 20 batches, `eval_interval` = `--steps`; the zoo:
val/loss over its whole validation split). Prints a markdown table of medians and ratios for
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import pickle
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's zoo

import numpy as np

from zoo.data.text import TextDataModule, stdlib_corpus

LINES = re.MULTILINE
SHAPE = {"layers": 4, "heads": 4, "width": 128, "block": 64, "batch": 12}
# nanoGPT's optimizer in config/train_shakespeare_char.py and train.py, as zoo overrides: AdamW
# (betas 0.9 / 0.99, weight decay 0.1), lr 1e-3 warmed up over 100 steps then decayed on a
# cosine to 1e-4 at the last step (OneCycleLR: conf/scheduler/onecycle.yaml), gradients clipped
# to norm 1. (nanoGPT warms up linearly and decays no 1-D tensors; the zoo's OneCycleLR warms up
# on a cosine and AdamW decays every tensor: the LayerNorm weights, 4 x 128 x 2 + 128 numbers.)
WARMUP_STEPS = 100
NANOGPT_OPTIMIZER = [
    "optimizer=adamw", "optimizer.lr=1e-3", "optimizer.betas=[0.9,0.99]",
    "optimizer.weight_decay=0.1", "scheduler=onecycle", "trainer.gradient_clip_val=1.0",
]  # fmt: skip


def prepare(folder: Path, chars: int) -> Path:
    """The text file both train on, and nanoGPT's train.bin / val.bin / meta.pkl beside it."""
    text, _ = stdlib_corpus(chars)
    path = folder / "text.txt"
    path.write_text(text, encoding="utf-8")
    data = TextDataModule(path=str(path), block_size=SHAPE["block"], batch_size=SHAPE["batch"])
    data.setup()
    for split in ("train", "val"):
        data.ids[split].numpy().astype(np.uint16).tofile(folder / f"{split}.bin")
    characters = data.vocabulary.characters
    meta = {
        "vocab_size": len(characters),
        "itos": dict(enumerate(characters)),
        "stoi": {c: i for i, c in enumerate(characters)},
    }
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    return path


def environment() -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def timed(command: list[str], cwd: Path) -> tuple[float, float, str]:
    """The command's wall and CPU seconds (user + system, its child processes included) and
    its output; one error line and the output's tail when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=cwd, env=environment(), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        sys.exit(f"error: {' '.join(command[:3])} failed:\n{tail}")
    return seconds, cpu, done.stdout + done.stderr


def run_nanogpt(nanogpt: Path, data: Path, out: Path, steps: int) -> dict[str, float]:
    """nanoGPT's train.py with its CPU quick-start settings, `steps` optimizer steps before the
    evaluation (its loop runs one more step after it; that step is in the whole-process time)."""
    command = [
        sys.executable, "train.py", "config/train_shakespeare_char.py",
        f"--dataset={data}", f"--out_dir={out}", "--device=cpu", "--compile=False",
        "--eval_iters=20", "--log_interval=1", f"--block_size={SHAPE['block']}",
        f"--batch_size={SHAPE['batch']}", f"--n_layer={SHAPE['layers']}",
        f"--n_head={SHAPE['heads']}", f"--n_embd={SHAPE['width']}", f"--max_iters={steps}",
        f"--lr_decay_iters={steps}", f"--eval_interval={steps}", "--dropout=0.0",
    ]  # fmt: skip
    seconds, cpu, output = timed(command, nanogpt)
    times = [float(t) for t in re.findall(r"^iter \d+: .*time ([\d.]+)ms", output, LINES)]
    losses = re.findall(rf"^step {steps}: train loss [\d.]+, val loss ([\d.]+)", output, LINES)
    tokens = SHAPE["batch"] * SHAPE["block"]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "tokens_per_s": tokens / (statistics.median(times[1:]) / 1000),
        "val_loss": float(losses[-1]),
    }


def run_zoo(text: Path, logs: Path, steps: int, extra: list[str]) -> dict[str, float]:
    """`python train.py model=gpt data=text` on the same text and shape, `steps` steps."""
    command = [
        sys.executable, "train.py", "model=gpt", "data=text", f"data.path={text}",
        f"data.block_size={SHAPE['block']}", f"data.batch_size={SHAPE['batch']}",
        f"data.steps_per_epoch={steps}", "trainer.max_epochs=1",
        f"model.depth={SHAPE['layers']}", f"model.heads={SHAPE['heads']}",
        f"model.width={SHAPE['width']}", "model.dropout=0", "threads=1",
        f"paths.log_dir={logs}", *NANOGPT_OPTIMIZER, f"scheduler.pct_start={WARMUP_STEPS / steps}",
        *extra,
    ]  # fmt: skip
    seconds, cpu, _ = timed(command, ROOT)
    step_seconds, val_loss = zoo_events(logs)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "tokens_per_s": SHAPE["batch"] * SHAPE["block"] / step_seconds,
        "val_loss": val_loss,
    }


def zoo_events(logs: Path) -> tuple[float, float]:
    """The newest run's median seconds per training step (between its logged train/loss_step
    points, every trainer.log_every_n_steps steps from the first, which comes after any compile)
    and its last val/loss, from its TensorBoard event file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = max(logs.rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    points = accumulator.Scalars("train/loss_step")
    per_step = [
        (b.wall_time - a.wall_time) / (b.step - a.step) for a, b in itertools.pairwise(points)
    ]
    return statistics.median(per_step), accumulator.Scalars("val/loss")[-1].value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs of runs")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    parser.add_argument("--chars", type=int, default=86_000, help="characters of text")
    parser.add_argument("--compile", action="store_true", help="also the zoo with compile")
    parser.add_argument("--fused", action="store_true", help="also the zoo with fused AdamW")
    args = parser.parse_args()
    if not (args.nanogpt / "train.py").is_file() or not (args.nanogpt / "model.py").is_file():
        sys.exit(f"error: {args.nanogpt} is not a nanoGPT checkout (no train.py / model.py)")
    with tempfile.TemporaryDirectory(prefix="zoo-nanogpt-") as work:  # text and logs, ~140 MB
        compare(args, Path(work))


def compare(args: argparse.Namespace, work: Path) -> None:
    """Alternating pairs of nanoGPT and zoo runs in `work`, then the report."""
    text = prepare(work, args.chars)
    extras = {"zoo": []}
    if args.fused:
        extras["zoo fused"] = ["+optimizer.fused=true"]
    if args.compile:
        extras["zoo compile"] = ["model.compile=true"]
    variants = list(extras)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ["nanoGPT", *variants]}
    load = []
    for pair in range(args.pairs):
        order = ["nanoGPT", *variants] if pair % 2 == 0 else [*variants, "nanoGPT"]
        for name in order:
            load.append(os.getloadavg()[0])
            if name == "nanoGPT":
                result = run_nanogpt(args.nanogpt, work, work / f"out{pair}", args.steps)
            else:
                logs = work / f"logs-{name.replace(' ', '-')}-{pair}"
                result = run_zoo(text, logs, args.steps, extras[name])
            results[name].append(result)
            values = ", ".join(f"{k} {v:.3f}" for k, v in result.items())
            print(f"pair {pair + 1} {name}: {values}", flush=True)
    report(args, results, load)


def report(args: argparse.Namespace, results: dict, load: list[float]) -> None:
    import torch

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    def each(name: str, key: str, digits: int) -> str:
        return " / ".join(f"{r[key]:,.{digits}f}" for r in results[name])

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n- date: {now}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"1 torch thread each; python {platform.python_version()}, torch {torch.__version__}; "
        f"load average before each run {min(load):.1f}-{max(load):.1f}"
    )
    print(
        f"- `python bench/nanogpt_compare.py --nanogpt <checkout> --pairs {args.pairs}"
        f"{' --fused' if args.fused else ''}{' --compile' if args.compile else ''}`: "
        f"{args.steps} steps, {args.chars:,} characters"
    )
    print(
        "\n| run | whole process s (each) | median | x nanoGPT | steady training tokens/s (median) "
        "| x nanoGPT | val loss (median) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    base_s, base_t = median("nanoGPT", "seconds"), median("nanoGPT", "tokens_per_s")
    for name in results:
        s, t = median(name, "seconds"), median(name, "tokens_per_s")
        print(
            f"| {name} | {each(name, 'seconds', 1)} | {s:.1f} | {base_s / s:.2f} | {t:,.0f} "
            f"| {t / base_t:.2f} | {median(name, 'val_loss'):.3f} |"
        )


if __name__ == "__main__":
    main()
