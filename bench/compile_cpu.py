"""`model.compile=true` on a CPU: compile time and steady-state training steps against eager.

    python bench/compile_cpu.py                  # gpt, vit, cnn; a few minutes on 2 cores
    python bench/compile_cpu.py --families gpt

For each network (the GPT in the nanoGPT-comparison shape, 4 x 128, batch 12 x 64 tokens; the
ViT and the CNN at their defaults on the digits' 1 x 8 x 8 images, batch 64) a compiled copy
(`nn.Module.compile()` with zoo.tasks.base.compile_options, as `model.compile=true` does) and an
eager copy train on the same batch with Adam, one torch thread. Reports the first compiled
step's seconds (the compile, in a fresh inductor cache unless --warm-cache; CPU seconds include
the C++ compiler's processes) and the median CPU ms per step of each after warm-up, measured
alternating, and the steps after which compiling has paid for itself.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's zoo


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (compiler processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def case(family: str) -> tuple[Callable, object, object, int]:
    """(make the net, inputs, targets, steps per timing) for a family."""
    import torch

    from zoo.nets import GPT, ConvNet, ViT

    generator = torch.Generator().manual_seed(0)
    if family == "gpt":
        vocab = 101
        ids = torch.randint(0, vocab, (12, 65), generator=generator)
        return lambda: GPT((64,), vocab, vocab), ids[:, :-1], ids[:, 1:], 10
    images = torch.randn(64, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 10, (64,), generator=generator)
    net = {"vit": ViT, "cnn": ConvNet}[family]
    return lambda: net((1, 8, 8), 10), images, labels, 50


def measure(family: str, repeats: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from zoo.tasks.base import compile_options

    make, x, y, steps = case(family)
    torch.manual_seed(0)
    eager = make()
    compiled = copy.deepcopy(eager)
    compiled.compile(**compile_options(torch.device("cpu")))
    optimizers = {id(net): torch.optim.Adam(net.parameters()) for net in (eager, compiled)}

    def step(net: torch.nn.Module) -> None:
        out = net(x)
        loss = F.cross_entropy(out.flatten(0, -2), y.flatten())
        loss.backward()
        optimizers[id(net)].step()
        optimizers[id(net)].zero_grad()

    wall, cpu = time.perf_counter(), cpu_seconds()
    step(compiled)
    first = {"compile_wall_s": time.perf_counter() - wall, "compile_cpu_s": cpu_seconds() - cpu}
    for net in (compiled, eager, compiled, eager):
        step(net)
    per_step: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(repeats):
        for name, net in (("eager", eager), ("compiled", compiled)):
            start = time.process_time()
            for _ in range(steps):
                step(net)
            per_step[name].append((time.process_time() - start) / steps)
    eager_s, compiled_s = (statistics.median(per_step[k]) for k in ("eager", "compiled"))
    saved = eager_s - compiled_s
    return first | {
        "eager_ms": 1000 * eager_s,
        "compiled_ms": 1000 * compiled_s,
        "speedup": eager_s / compiled_s,
        "break_even_steps": first["compile_cpu_s"] / saved if saved > 0 else float("inf"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="gpt,vit,cnn")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--warm-cache", action="store_true", help="keep inductor's usual cache")
    args = parser.parse_args()
    if not args.warm_cache:
        cold_cache = tempfile.TemporaryDirectory(prefix="zoo-inductor-")  # removed at exit
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cold_cache.name
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    rows = {family: measure(family, args.repeats) for family in args.families.split(",")}
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n- date: {now}; {platform.machine()}, {os.cpu_count()} cores, 1 torch thread, load "
        f"average {os.getloadavg()[0]:.1f}; torch {torch.__version__}; inductor cache "
        f"{'warm' if args.warm_cache else 'cold'}\n"
    )
    print(
        "| net | compile (first step) wall s | compile CPU s | eager CPU ms/step "
        "| compiled CPU ms/step | compiled speed x eager | steps to pay off the compile |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for family, r in rows.items():
        print(
            f"| {family} | {r['compile_wall_s']:.1f} | {r['compile_cpu_s']:.1f} "
            f"| {r['eager_ms']:.2f} | {r['compiled_ms']:.2f} | {r['speedup']:.2f} "
            f"| {r['break_even_steps']:,.0f} |"
        )


if __name__ == "__main__":
    main()
