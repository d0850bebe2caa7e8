"""Epoch time of the tree networks on the published ListOps distribution, side by side.

    python bench/tree_batching.py            # 2,000 training trees, 2 rounds; minutes on one core
    python bench/tree_batching.py --quick    # 640 trees, 1 round: a smoke run

One epoch (forward, backward, Adam step per batch of 64) of TreeLSTM and TreeRNN over the same
generated examples (`data=listops` defaults), on one CPU thread, four ways:

- before: random batches padded to the widest tree of the data, and the former level-by-level
  pass that concatenated every state of the batch once per level (`concat_forward` below);
- random batches, each padded to its own widest tree, with the current pass;
- after: depth-bucketed batches (`BucketLoader`, what `data=listops` serves) with the current pass,
  which keeps only the states still needed;
- the per-node recursion (`zoo.nets.tree.recursive_forward`), timed on the first 4 bucketed
  batches and scaled to the epoch by node count.

The ways alternate within each round; the best round counts. Prints a markdown report for
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's zoo

import torch
import torch.nn.functional as F
from throughput import versions  # beside this file

from zoo.data import ListOpsDataModule
from zoo.nets import TreeLSTM, TreeRNN
from zoo.nets.tree import TreeNet, recursive_forward


def concat_forward(net: TreeNet, x: torch.Tensor) -> torch.Tensor:
    """The former pass: all states of the batch in one tensor, extended by cat at every level."""
    batch, nodes, _ = x.shape
    tokens, left, right, level = x.reshape(batch * nodes, 4).unbind(1)
    order = torch.argsort(level, stable=True)
    padding, *counts = torch.bincount(level + 1, minlength=2).tolist()
    place = torch.empty_like(order)
    place[order] = torch.arange(-padding, batch * nodes - padding)
    offset = torch.arange(batch).repeat_interleave(nodes) * nodes
    children = place[(torch.stack([left, right], 1) + offset[:, None]).clamp(min=0)]
    leaves, *levels = order[padding:].split(counts)
    states = net.leaf(tokens[leaves])
    for rows in levels:
        states = torch.cat([states, net.combine(states[children[rows]])])
    roots = place[level.view(batch, nodes).argmax(1) + torch.arange(batch) * nodes]
    return net.head(net.hidden(states[roots]))


def epoch_time(net: TreeNet, forward: Callable, batches: list) -> float:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(forward(net, x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="640 trees, one round")
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        args.examples, args.rounds = 640, 1
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = ListOpsDataModule(num_train=args.examples, num_val=1, num_test=1, batch_size=64)
    data.setup()
    examples, targets = data.items["train"]
    bucketed = list(data.train_dataloader())
    order = torch.randperm(len(examples)).split(64)
    random_own = [(data.pad([examples[i] for i in b.tolist()]), targets[b]) for b in order]
    random_wide = [
        (data.pad([examples[i] for i in b.tolist()], data.width), targets[b]) for b in order
    ]
    sample = bucketed[:4]
    nodes = sum(len(e) for e in examples)
    ways = {
        "before: random batches, padded to the widest, concat pass": (concat_forward, random_wide),
        "random batches, each padded to its own widest, live-state pass": (
            lambda net, x: net(x),
            random_own,
        ),
        "after: depth-bucketed batches, live-state pass": (lambda net, x: net(x), bucketed),
        "per-node recursion (4 batches, scaled by nodes)": (recursive_forward, sample),
    }
    levels = {
        "random": sum(int(x[..., 3].max()) for x, _ in random_own),
        "bucketed": sum(int(x[..., 3].max()) for x, _ in bucketed),
    }
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for cls in (TreeLSTM, TreeRNN):
            for way, (forward, batches) in ways.items():
                torch.manual_seed(0)
                net = cls((data.width, 4), 10, 18)
                seconds = epoch_time(net, forward, batches)
                if way.startswith("per-node"):
                    sampled = sum(int((x[..., 3] >= 0).sum()) for x, _ in batches)
                    seconds *= nodes / sampled
                key = (cls.__name__, way)
                best[key] = min(best.get(key, float("inf")), seconds)
    header = (
        f"## Tree networks on the published ListOps distribution: epoch time\n\n{versions()}\n"
        f"- one epoch of {len(examples)} generated trees (`data=listops` defaults: nesting up to "
        f"19, up to {data.width} nodes), batch 64, Adam, 1 thread; best of {args.rounds} "
        f"alternating rounds; levels summed over the epoch's batches: random "
        f"{levels['random']}, bucketed {levels['bucketed']}\n"
    )
    lines = [
        header,
        "| net | way | epoch (s) | vs before |",
        "|---|---|---:|---:|",
    ]
    for (name, way), seconds in best.items():
        before = best[(name, next(iter(ways)))]
        lines.append(f"| {name} | {way} | {seconds:.1f} | {before / seconds:.1f}x |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
