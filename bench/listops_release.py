"""Trained ListOps models on the release's own test file (Nangia & Bowman 2018, `test_d20s.tsv`).

    python bench/listops_release.py --test <folder>/test_d20s.tsv logs/results/full_*/runs

The zoo trains on generated examples with the release's generator settings (`data=listops`);
the paper's figures are for the released files. This evaluates each finished ListOps run under
the folders given (its best checkpoint, as `zoo train` tests it) on the 10,000 released test
examples, read with the zoo's own reader, and prints a markdown table: per model, the test
accuracy on its own generated test split (from its run) and on the release's, mean ± std over
the runs found. The release file is not shipped with the zoo: bring it (nyu-mll/spinn, branch
listops-release, python/spinn/data/listops/test_d20s.tsv).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's zoo


def accuracy_on(examples: list, run: Path) -> float:
    """The test accuracy on `examples` of the run's best checkpoint."""
    import lightning as L
    from omegaconf import OmegaConf

    import zoo
    from zoo.data.listops import ListOpsDataModule

    config = OmegaConf.load(run / ".hydra" / "config.yaml")
    best = max((run / "checkpoints").glob("best-*.ckpt"), key=lambda path: path.stat().st_mtime)
    task = zoo.load(str(best))
    with tempfile.TemporaryDirectory() as folder:
        data = ListOpsDataModule(data_dir=folder, batch_size=config.data.batch_size)
        data.use("tree" if "tree" in task.net.accepts else "tokens")
        data.examples = {"test": examples}
        trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
        (metrics,) = trainer.test(task, dataloaders=data.test_dataloader(), verbose=False)
    return metrics["test/acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=Path, required=True, help="the release's test_d20s.tsv")
    parser.add_argument("folders", type=Path, nargs="+", help="folders holding ListOps runs")
    args = parser.parse_args()
    import torch

    from zoo.cli.compare import find_runs
    from zoo.data.listops import read_release_file

    torch.set_num_threads(1)
    examples = read_release_file(args.test)
    runs, _ = find_runs(args.folders)
    rows: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        if run.dataset != "listops" or run.last("test/acc") is None:
            continue
        released = accuracy_on(examples, run.folder)
        row = rows.setdefault(run.model, {"generated": [], "release": []})
        row["generated"].append(run.last("test/acc"))
        row["release"].append(released)
        print(f"{run.folder.name}: generated {row['generated'][-1]:.4f}, release {released:.4f}")

    def cell(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {spread:.3f}"

    print(f"\n{len(examples):,} release test examples ({args.test.name})\n")
    print("| model | runs | test acc, generated test split | test acc, release test file |")
    print("|---|---:|---:|---:|")
    order = sorted(rows, key=lambda key: -statistics.mean(rows[key]["release"]))
    for key in order:
        values = rows[key]
        print(f"| {key} | {len(values['release'])} | {cell(values['generated'])} "
              f"| {cell(values['release'])} |")


if __name__ == "__main__":
    main()
