"""Summarise finished runs from their TensorBoard event files: one table per task and metric
(best first, within the terminal's width) and a figure with one panel per task and metric."""

from __future__ import annotations

import re
import shutil
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf.json_format import MessageToDict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from zoo.cli.options import Option, help_text, parse, wants_help
from zoo.cli.outputs import check_output, write_atomically
from zoo.errors import first_line
from zoo.run.folders import FAILED, NOT_APPLICABLE, project_root
from zoo.run.naming import NAME_LIMIT, readable_items
from zoo.tasks import TASKS, Task, task_named

# A sweep's run folder for a model/data pair that cannot work holds this file, with the reason.
COLUMNS = ("run", "model", "data", "params", "best", "test", "epochs", "fit s", "samples/s")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_?")  # ${now:...}_ in run folders
STATS = ("parameters", "epochs", "fit_seconds", "samples_per_second")


@dataclass
class Run:
    """One finished run: where it lives, what it trained, its scalar series and HPARAMS row."""

    folder: Path
    model: str
    dataset: str
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)  # its readable overrides (zoo.run.naming)

    def last(self, tag: str | None) -> float | None:
        series = self.scalars.get(tag or "")
        return series[-1][1] if series else None

    @property
    def task(self) -> type[Task]:
        """The task class the run trained (its HPARAMS row's `task`); for a run without one,
        the first task that declares every score the run logs and whose headline it logs."""
        named = task_named(self.hparams.get("task"))
        if named is not None:
            return named
        scores = {tag for tag in self.scalars if tag.startswith(("val/", "test/"))}
        return next(
            (
                cls
                for cls in TASKS.values()
                if scores <= set(cls.higher_is_better) and scores.intersection(cls.val_metric)
            ),
            Task,
        )

    @property
    def val_metric(self) -> str:
        """The headline validation metric its task declares (the first of them it logged)."""
        declared = self.task.val_metric
        return next((t for t in declared if t in self.scalars), declared[0])

    @property
    def test_metric(self) -> str | None:
        return next((t for t in self.task.test_metric if t in self.scalars), None)

    @property
    def higher_is_better(self) -> bool:
        return bool(self.task.higher_is_better.get(self.val_metric, False))

    @property
    def group(self) -> str:
        """The runs whose numbers compare: the same headline metric of the same task."""
        task = self.hparams.get("task")
        return f"{self.val_metric} ({task})" if task else self.val_metric

    def best(self) -> float | None:
        values = [v for _, v in self.scalars.get(self.val_metric, [])]
        if not values:
            return None
        return max(values) if self.higher_is_better else min(values)

    def cells(self, root: Path) -> dict[str, str]:
        """The run's table cells by column name (also any HPARAMS column, e.g. `lr`)."""
        stats = {tag: self.last(f"run/{tag}") for tag in STATS}
        epochs = (
            stats["epochs"]
            if stats["epochs"] is not None
            else len(self.scalars.get(self.val_metric, []))
        )
        return {name: fmt(value) for name, value in self.hparams.items()} | {
            "run": relative(self.folder, root),
            "model": self.model,
            "data": self.dataset,
            "params": fmt(stats["parameters"], "{:,.0f}"),
            "best": score(self.best()),
            "test": score(self.last(self.test_metric)),
            "epochs": fmt(epochs, "{:.0f}"),
            "fit s": fmt(stats["fit_seconds"], "{:.1f}"),
            "samples/s": fmt(stats["samples_per_second"], "{:,.0f}"),
        }


class SeedRuns(Run):
    """Runs that differ only by `seed`, as one row: the mean ± std over them of each score."""

    def __init__(self, members: list[Run]) -> None:
        first = members[0]
        seeds = ",".join(fmt(m.hparams.get("seed", "?"), "{:g}") for m in members)
        changed = [c for c in first.changed if not c.startswith("seed=")] + [f"seed={seeds}"]
        super().__init__(first.folder, first.model, first.dataset, first.scalars, first.hparams)
        self.changed, self.members, self.seeds = changed, members, seeds

    def best(self) -> float | None:
        return mean([m.best() for m in self.members])

    def last(self, tag: str | None) -> float | None:
        return mean([m.last(tag) for m in self.members])

    def cells(self, root: Path) -> dict[str, str]:
        scores = {"best": [m.best() for m in self.members]}
        scores["test"] = [m.last(self.test_metric) for m in self.members]
        return super().cells(root) | {k: spread(v) for k, v in scores.items()}


def mean(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.fmean(found) if found else None


def spread(values: list[float | None]) -> str:
    """`0.9123 ± 0.0041 (n=3)`: mean ± sample std of the values there are."""
    found = [v for v in values if v is not None]
    if len(found) < 2:
        return score(mean(found))
    return f"{score(statistics.fmean(found))} ± {score(statistics.stdev(found))} (n={len(found)})"


def merge_seeds(runs: list[Run]) -> list[Run]:
    """Runs that differ only by `seed` (same model, data and other overrides) as one SeedRuns."""
    together: dict[tuple, list[Run]] = {}
    for run in runs:
        others = tuple(c for c in run.changed if not c.startswith("seed="))
        together.setdefault((run.group, run.model, run.dataset, others), []).append(run)
    return [group[0] if len(group) == 1 else SeedRuns(group) for group in together.values()]


def fmt(value: Any, pattern: str = "{:.4g}") -> str:
    if value is None:
        return "-"
    return pattern.format(value) if isinstance(value, (int, float)) else str(value)


def score(value: float | None) -> str:
    """0.9123, or 2,495.0 for large values (an MSE in the data's units)."""
    return fmt(value, "{:.4f}" if value is None or abs(value) < 100 else "{:,.1f}")


def relative(folder: Path, root: Path) -> str:
    """The run's folder under `root`, start times left out (the folder's token still tells
    runs apart): `cnn-digits/optimizer=sgd_4f2a1c`."""
    try:
        name = str(folder.relative_to(root)) or "."
    except ValueError:
        name = str(folder)
    return TIMESTAMP.sub("", name).rstrip("_/") or name


def display_name(run: Run, root: Path, shared: set[str]) -> str:
    """The run's folder under `root` without start times and without the `shared` overrides
    (those of every run in its table, said once above it)."""
    name = relative(run.folder, root)
    if isinstance(run, SeedRuns):  # the first run's folder names the seeds of them all
        name = re.sub(r"seed=[^,_/]+", f"seed={run.seeds}", name)
    written = readable_overrides_of(run.changed)
    if shared and written and written in name:
        kept = ",".join(item for item in run.changed if item not in shared)
        name = name.replace(written, kept)
        name = re.sub(r"_+(?=/|_|$)", "", name)
    return name


def readable_overrides_of(items: list[str]) -> str:
    name = ",".join(items)
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 3] + "..."


def read_record(path: Path) -> Any:
    """A record file's YAML, or None when it is missing, unreadable or not YAML (a damaged
    record makes compare fall back to what the folder's name says, with a note)."""
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        print(f"note: ignoring {path}: not readable YAML ({first_line(str(error))})")
        return None


def recorded_overrides(folder: Path) -> list[str]:
    """The run's command-line overrides from its record (.hydra/overrides.yaml)."""
    overrides = read_record(folder / ".hydra" / "overrides.yaml")
    return [str(o) for o in overrides] if isinstance(overrides, list) else []


def names(folder: Path) -> tuple[str, str]:
    """(model, dataset) from Hydra's recorded choices, else from the folder name."""
    record = read_record(folder / ".hydra" / "hydra.yaml")
    try:
        choices = record["hydra"]["runtime"]["choices"]
        return str(choices.get("model")), str(choices.get("data"))
    except (TypeError, KeyError, AttributeError):
        model, _, dataset = folder.name.split("_")[-1].partition("-")
        return model or "?", dataset or "?"


def hparams_row(events: EventAccumulator) -> dict[str, Any]:
    """The run's values in TensorBoard's HPARAMS tab (empty for runs that wrote none)."""
    try:
        content = events.PluginTagToContent("hparams")[metadata.SESSION_START_INFO_TAG]
    except KeyError:  # no HPARAMS records, or no row of this run's values
        return {}
    start = metadata.parse_session_start_info_plugin_data(content)
    return MessageToDict(start).get("hparams", {})


def load_run(folder: Path) -> Run:
    """Read every scalar series in `folder` with TensorBoard's EventAccumulator."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    run = Run(folder, *names(folder))
    for tag in events.Tags()["scalars"]:
        run.scalars[tag] = [(event.step, event.value) for event in events.Scalars(tag)]
    run.hparams = hparams_row(events)
    run.changed = readable_items(recorded_overrides(folder))
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


def grouped(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs by task and metric, each group best first (runs with no score last)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    for members in groups.values():
        higher = members[0].higher_is_better
        members.sort(key=lambda r: (r.best() is None, -(r.best() or 0) if higher else r.best()))
    return dict(sorted(groups.items()))


def shorten(text: str, width: int) -> str:
    """`text` in at most `width` characters, its middle cut out (`...`)."""
    if len(text) <= width:
        return text
    keep = max(width - 3, 2)
    return text[: keep - keep // 2] + "..." + text[len(text) - keep // 2 :]


def shared_overrides(runs: list[Run]) -> set[str]:
    """The overrides every one of `runs` has (none for a single run: its name says them)."""
    if len(runs) < 2:
        return set()
    return set.intersection(*(set(run.changed) for run in runs))


def table(
    runs: list[Run], root: Path, columns: tuple[str, ...] = COLUMNS, width: int | None = None
) -> str:
    """A plain-text table, one row per run, within `width` characters (the terminal's): the
    run column gives way first; its names leave out the overrides all rows share. Columns
    beyond COLUMNS are HPARAMS ones (`lr`, `model.cell`)."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    shared = shared_overrides(runs)
    rows = [
        list(columns),
        *(
            [
                run.cells(root).get(c, "-") if c != "run" else display_name(run, root, shared)
                for c in columns
            ]
            for run in runs
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    if "run" in columns:
        at = columns.index("run")
        others = sum(widths) - widths[at] + 2 * (len(columns) - 1)
        widths[at] = max(min(widths[at], width - others), 20)
        for row in rows:
            row[at] = shorten(row[at], widths[at])
    lines = [
        "  ".join(cell.ljust(size) for cell, size in zip(row, widths)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * size for size in widths))
    return "\n".join(lines)


def report(runs: list[Run], root: Path, columns: tuple[str, ...], width: int | None) -> str:
    """One table per task and metric: its headline, the overrides all its runs share, then its
    runs best first (runs that differ only by seed: one row, mean ± std)."""
    parts = []
    for group, members in grouped(merge_seeds(runs)).items():
        runs_ = f"{len(members)} run{'s' * (len(members) != 1)}"
        metrics = f"best = best {members[0].val_metric}, test = {members[0].test_metric or '-'}"
        shared = ",".join(sorted(shared_overrides(members)))
        common = f"\nall with: {shared}" if shared else ""
        parts.append(
            f"{group}: {runs_}, best first ({metrics}){common}\n"
            f"{table(members, root, columns, width)}"
        )
    return "\n\n".join(parts)


def plot(runs: list[Run], path: Path, root: Path, top: int = 10) -> Path:
    """One panel per task and metric with the validation curves of its `top` best runs, the
    legend beside the panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    groups = grouped(runs)
    figure, axes = plt.subplots(len(groups), 1, figsize=(13, 3.8 * len(groups)), squeeze=False)
    for axis, (group, members) in zip(axes[:, 0], groups.items()):
        shown = members[:top]
        shared = shared_overrides(members)
        for run in shown:
            series = run.scalars.get(run.val_metric, [])
            axis.plot(
                range(1, len(series) + 1),
                [v for _, v in series],
                marker=".",
                label=f"{score(run.best())}  {shorten(display_name(run, root, shared), 70)}",
            )
        hidden = f", best {len(shown)} of {len(members)}" if len(members) > len(shown) else ""
        axis.set(xlabel="epoch", ylabel=shown[0].val_metric, title=f"{group}{hidden}")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    try:
        write_atomically(
            path, lambda partial: figure.savefig(partial, dpi=100, bbox_inches="tight")
        )
    finally:
        plt.close(figure)
    return path


def compare(
    roots: list[Path],
    plot_path: Path,
    columns: tuple[str, ...] = COLUMNS,
    top: int = 10,
    width: int | None = None,
) -> int:
    """Print the tables of finished runs under `roots`, say which were skipped, write the plot."""
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
    print(report(runs, root, columns, width))
    print(f"plot: {plot(runs, plot_path, root, top)}")
    return 0


OPTIONS = {
    "plot": Option(
        "str",
        None,
        "the figure's file (.png, .pdf, .svg, ...; default: <first folder>/compare.png)",
    ),
    "columns": Option(
        "list",
        ",".join(COLUMNS),
        "table columns, comma-separated: these or "
        "any HPARAMS column (lr, model.cell, optimizer, ...)",
    ),
    "top": Option("int", 10, "curves per panel: the best N runs", minimum=1),
    "width": Option("int", None, "table width in characters (default: the terminal's)", minimum=20),
}
SUMMARY = """Tables and curves of every finished run under the given folders (default: the
checkout's logs/, where training writes): zoo compare [FOLDER ...] [key=value ...]"""


def main(argv: list[str] | None = None) -> int:
    """Folders (arguments without `=`) and `key=value` options; one `error:` line and exit 2
    on bad input."""
    argv = sys.argv[1:] if argv is None else argv
    if wants_help(argv):
        print(help_text("compare", SUMMARY, OPTIONS).replace(" [plot=", " [FOLDER ...] [plot=", 1))
        return 0
    folders = [Path(a) for a in argv if "=" not in a and not a.startswith("-")]
    try:  # --flags (compare's old options) go to parse, which says how options are given
        arguments = parse("compare", [a for a in argv if "=" in a or a.startswith("-")], OPTIONS)
        folders = folders or [Path(project_root()) / "logs"]
        plot_path = check_output(arguments["plot"] or folders[0] / "compare.png", (), "plot")
        check_plot_format(plot_path)
        columns = arguments["columns"]
        return compare(
            folders,
            plot_path,
            tuple(columns if isinstance(columns, list) else columns.split(",")),
            arguments["top"],
            arguments["width"],
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def check_plot_format(path: Path) -> None:
    """One ValueError line unless matplotlib writes files with `path`'s extension."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise ValueError(
            f"plot={path}: matplotlib writes {', '.join('.' + f for f in sorted(formats))} "
            f"files, not {path.suffix or 'files without an extension'}"
        )
