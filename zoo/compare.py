"""Summarise finished runs from their TensorBoard event files: a table and one validation plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# A sweep's run folder for a model/data pair that cannot work holds this file, with the reason.
NOT_APPLICABLE = "not_applicable.txt"  # a sweep point whose model and data cannot meet
FAILED = "failed.txt"  # a sweep point refused with a bad value (zoo.runs.refuse)
COLUMNS = (
    "run",
    "model",
    "dataset",
    "parameters",
    "best val",
    "test",
    "epochs",
    "fit s",
    "samples/s",
)


@dataclass
class Run:
    """One finished run: where it lives, what it trained, and its scalar series."""

    folder: Path
    model: str
    dataset: str
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def last(self, tag: str) -> float | None:
        series = self.scalars.get(tag)
        return series[-1][1] if series else None

    @property
    def val_metric(self) -> str:
        return next((t for t in ("val/acc", "val/fid", "val/bpc") if t in self.scalars), "val/loss")

    def row(self, root: Path) -> list[str]:
        """The run's cells in COLUMNS order."""
        val = [v for _, v in self.scalars.get(self.val_metric, [])]
        best = (max(val) if self.val_metric == "val/acc" else min(val)) if val else None
        test_tag = next(
            (
                t
                for t in ("test/acc", "test/fid", "test/bpc", "test/nmi", "test/loss")
                if t in self.scalars
            ),
            None,
        )
        stats = {
            tag: self.last(f"run/{tag}")
            for tag in ("parameters", "epochs", "fit_seconds", "samples_per_second")
        }
        epochs = stats["epochs"] if stats["epochs"] is not None else len(val)
        return [
            relative(self.folder, root),
            self.model,
            self.dataset,
            fmt(stats["parameters"], "{:,.0f}"),
            f"{self.val_metric} {best:.4f}" if best is not None else "-",
            f"{test_tag} {self.last(test_tag):.4f}" if test_tag else "-",
            fmt(epochs, "{:.0f}"),
            fmt(stats["fit_seconds"], "{:.1f}"),
            fmt(stats["samples_per_second"], "{:,.0f}"),
        ]


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def relative(folder: Path, root: Path) -> str:
    try:
        return str(folder.relative_to(root)) or "."
    except ValueError:
        return str(folder)


def names(folder: Path) -> tuple[str, str]:
    """(model, dataset) from Hydra's recorded choices, else from the folder name."""
    hydra_file = folder / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        choices = yaml.safe_load(hydra_file.read_text())["hydra"]["runtime"]["choices"]
        return str(choices.get("model")), str(choices.get("data"))
    model, _, dataset = folder.name.split("_")[-1].partition("-")
    return model or "?", dataset or "?"


def load_run(folder: Path) -> Run:
    """Read every scalar series in `folder` with TensorBoard's EventAccumulator."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    run = Run(folder, *names(folder))
    for tag in events.Tags()["scalars"]:
        run.scalars[tag] = [(event.step, event.value) for event in events.Scalars(tag)]
    return run


def find_runs(roots: list[Path]) -> tuple[list[Run], list[tuple[Path, str]]]:
    """Finished runs under `roots`, and (folder, reason) for each run that did not finish."""
    folders = sorted({p.parent for root in roots for p in root.rglob("events.out.tfevents.*")})
    finished, skipped = [], []
    for folder in folders:
        run = load_run(folder)
        # A finished fit logs run/fit_seconds; a test logs test/*; a crashed run has neither.
        if any(tag.startswith("test/") or tag == "run/fit_seconds" for tag in run.scalars):
            finished.append(run)
        else:
            skipped.append(
                (
                    folder,
                    "did not finish (no run/fit_seconds, no test metrics): crashed or interrupted",
                )
            )
    return finished, skipped


def table(runs: list[Run], root: Path) -> str:
    """A plain-text table, one row per run, columns aligned."""
    rows = [list(COLUMNS), *(run.row(root) for run in runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def plot(runs: list[Run], path: Path, root: Path) -> Path:
    """Validation curves of every run on one figure: accuracy, FID for GANs, else loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted({run.val_metric for run in runs})
    figure, axes = plt.subplots(1, len(metrics), figsize=(7 * len(metrics), 4.5), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for run in runs:
            series = run.scalars.get(metric)
            if series:
                axis.plot(
                    range(1, len(series) + 1),
                    [v for _, v in series],
                    marker=".",
                    label=f"{run.model} ({relative(run.folder, root)})",
                )
        axis.set(xlabel="epoch", ylabel=metric, title=f"{metric} per epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def compare(roots: list[Path], plot_path: Path) -> int:
    """Print the table of finished runs under `roots`, say which were skipped, write the plot."""
    missing = [root for root in roots if not root.exists()]
    if missing:
        print(f"error: no such folder: {', '.join(map(str, missing))}")
        return 2
    runs, skipped = find_runs(roots)
    for folder, reason in skipped:
        print(f"skipped {folder}: {reason}")
    for record in sorted(p for root in roots for p in root.rglob(NOT_APPLICABLE)):
        print(f"not applicable {record.parent}: {record.read_text().strip()}")
    for record in sorted(p for root in roots for p in root.rglob(FAILED)):
        print(f"failed {record.parent}: {record.read_text().strip()}")
    if not runs:
        print(f"error: no finished runs under {', '.join(map(str, roots))}")
        return 1
    root = roots[0] if len(roots) == 1 else Path.cwd()
    print(table(runs, root))
    print(f"plot: {plot(runs, plot_path, root)}")
    return 0
