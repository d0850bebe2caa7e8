"""Level-by-level batching of the tree networks against per-node recursion, side by side.

    python bench/tree_batching.py            # 256 trees, best of 3; about a minute on one core
    python bench/tree_batching.py --quick    # 64 trees, one repeat: a smoke run

On one batch of random ListOps-like trees (nested lists of 2-5 arguments, nesting depth <= 6,
each list binarised left-branching: `[MAX a b ]` -> `( ( ( [MAX a ) b ) ] )`), it times one
forward + backward of TreeRNN and TreeLSTM (a) level by level, `net(x)`, and (b) by
`zoo.nets.tree.recursive_forward`, one cell call per node, on one CPU thread. Prints a markdown
report to paste into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's zoo

import torch
from throughput import versions  # beside this file

from zoo.nets import TreeLSTM, TreeRNN
from zoo.nets.tree import recursive_forward

VOCAB = ["<pad>", "(", "]", "[MAX", "[MIN", "[MED", "[SM", *map(str, range(10))]


def listops_rows(rng: random.Random, depth: int, max_depth: int) -> list[list[int]]:
    """A random ListOps-like list as post-order rows [token, left, right, level]."""
    rows: list[list[int]] = []

    def add(token: int, left: int = -1, right: int = -1, level: int = 0) -> tuple[int, int]:
        rows.append([token, left, right, level])
        return len(rows) - 1, level

    def nested(depth: int) -> tuple[int, int]:
        node, level = add(rng.randrange(3, 7))  # the operator
        for argument in [*range(rng.randint(2, 5)), None]:
            if argument is None:
                child, child_level = add(2)  # "]"
            elif depth < max_depth and rng.random() < 0.25:
                child, child_level = nested(depth + 1)
            else:
                child, child_level = add(rng.randrange(7, 17))  # a digit
            node, level = add(1, node, child, 1 + max(level, child_level))
        return node, level

    nested(depth)
    return rows


def listops_batch(size: int, max_depth: int = 6, seed: int = 0) -> torch.Tensor:
    rng = random.Random(seed)
    examples = [listops_rows(rng, 1, max_depth) for _ in range(size)]
    x = torch.tensor([0, -1, -1, -1]).repeat(size, max(map(len, examples)), 1)
    for i, rows in enumerate(examples):
        x[i, : len(rows)] = torch.tensor(rows)
    return x


def best_time(step: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 trees, one repeat")
    parser.add_argument("--trees", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per path")
    parser.add_argument("--hidden-size", type=int, default=128)
    args = parser.parse_args()
    if args.quick:
        args.trees, args.repeats = 64, 1
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = listops_batch(args.trees)
    real = x[..., 3] >= 0
    header = (
        f"## Tree networks: level-by-level batching against per-node recursion\n\n{versions()}\n"
        f"- one forward + backward of {args.trees} ListOps-like trees: {int(real.sum())} nodes "
        f"({real.sum(1).float().mean():.1f} per tree), {int(x[..., 3].max())} levels, "
        f"hidden_size {args.hidden_size}; best of {args.repeats}\n"
    )
    lines = [
        header,
        "| net | level by level (s) | recursive (s) | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for cls in (TreeRNN, TreeLSTM):
        net = cls((x.shape[1], 4), 10, len(VOCAB), hidden_size=args.hidden_size)
        with torch.no_grad():
            torch.testing.assert_close(net(x), recursive_forward(net, x), rtol=1e-4, atol=1e-5)
        net(x).sum().backward()  # warm-up
        batched = best_time(lambda net=net: net(x).sum().backward(), args.repeats)
        recursive = best_time(
            lambda net=net: recursive_forward(net, x).sum().backward(), args.repeats
        )
        lines.append(
            f"| {cls.__name__} | {batched:.3f} | {recursive:.3f} | {recursive / batched:.1f}x |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
