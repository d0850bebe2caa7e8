"""`zoo results`: train the whole zoo over seeds as one Hydra multirun (conf/results/: every model
yaml on every dataset of the suite it takes) and write its results table, beside baselines on
the same splits: <out>/results.md, <out>/results.csv and pictures in <out>/results/.

    zoo results                            the full profile (the published numbers), 3 seeds
    zoo results profile=quick              a few minutes on 2 CPU cores
    zoo results seeds=5 out=my_results     other seeds, another folder (default: docs/)
    zoo results models=cnn,mlp datasets=digits,iris
    zoo results hydra/launcher=slurm trainer=gpu   any other override goes to every point
    zoo results sweep=<folder>             the sweep's folder (default: logs/results/<profile>_...)
    zoo results runs=<folder>/runs         no training: the tables again from a sweep's runs
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from omegaconf import DictConfig

from zoo.registry import list_models
from zoo.run.folders import RUN_ID, project_root, sweep_summary
from zoo.run.resolvers import register
from zoo.run.results import (
    aggregate,
    baselines_for,
    best_run,
    by_task,
    data_inputs,
    duration,
    leads,
    load_suite,
    markdown,
    save_pictures,
    suite_pairs,
    sweep_arguments,
    write_csv,
    write_points,
)

OPTIONS = ("profile", "seeds", "out", "models", "datasets", "sweep", "runs")
TRAIN = "from zoo.cli.train import main; main()"  # `zoo train`, in a process of its own


def same_zoo() -> dict[str, str]:
    """The environment for the sweep's process, importing this zoo (not another installed one)."""
    here = str(Path(__file__).resolve().parents[2])
    paths = [here, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(this command's key=value options, the overrides passed on to every point)."""
    options, passed = {"profile": "full", "out": str(Path(project_root()) / "docs")}, []
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {item!r} (zoo results --help)")
        if key in OPTIONS:
            options[key] = value
        else:
            passed.append(item)
    return options, passed


def names(text: str | None, known: list[str], what: str) -> list[str]:
    """A comma-separated choice among `known` (all of them when not given)."""
    if not text:
        return known
    chosen = [name for name in text.split(",") if name]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def machine() -> str:
    """The CPU's model and cores, and the GPU's name when there is one."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {cores} cores{gpu}"


def versions() -> str:
    packages = ("torch", "lightning", "hydra-core", "scikit-learn")
    return f"Python {platform.python_version()}, " + ", ".join(
        f"{name} {version(name)}" for name in packages
    )


def results(argv: list[str]) -> int:
    """Run the suite, then aggregate it; the exit status says whether every point ran."""
    register()  # the recorded configs' ${project_root:}, ${run_id:}, ...
    options, passed = parse(argv)
    profile = options["profile"]
    suite = load_suite(profile)
    seeds = int(options.get("seeds", suite.seeds))
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    models = names(options.get("models"), list_models(), "model")
    datasets = names(options.get("datasets"), list(suite.datasets), "dataset")
    out = Path(options["out"])
    if options.get("runs"):
        runs = Path(options["runs"])
        if not runs.is_dir():
            raise ValueError(f"no such folder: {runs}")
        return write_results(runs, out, suite, profile, seeds, None)
    log_dir = next(
        (item.split("=", 1)[1] for item in passed if item.startswith("paths.log_dir=")),
        str(Path(project_root()) / "logs"),
    )
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    folder = Path(options.get("sweep") or Path(log_dir) / "results" / f"{profile}_{stamp}_{RUN_ID}")
    folder = folder.resolve()
    started = time.time()
    pairs = suite_pairs(models, datasets, lambda d: data_inputs(d, list(suite.data.get(d, []))))
    if not pairs:
        raise ValueError("no model of those takes any of those datasets")
    points = write_points(folder / "suite", pairs, suite)
    seed_list = [int(suite.first_seed) + i for i in range(seeds)]
    print(
        f"results ({profile} profile): {len(pairs)} model x dataset pairs x {seeds} seeds = "
        f"{len(pairs) * seeds} points, into {folder}",
        flush=True,
    )
    arguments = sweep_arguments(
        folder / "suite",
        folder / "runs",
        points,
        seed_list,
        [*suite.overrides, *passed],
        started,
    )
    status = subprocess.call([sys.executable, "-c", TRAIN, *arguments], env=same_zoo())
    if status not in (0, 2):  # 2: some points failed (listed); the others still count
        print(f"error: the sweep stopped (exit {status}); its runs so far: {folder / 'runs'}")
        return status
    return write_results(folder / "runs", out, suite, profile, seeds, time.time() - started)


def write_results(
    sweep: Path, out: Path, suite: DictConfig, profile: str, seeds: int, seconds: float | None
) -> int:
    """Aggregate the finished runs under `sweep` into `out`: results.md, results.csv and the
    best seed's pictures of each row in results/."""
    from zoo.cli.compare import find_runs

    runs, skipped = find_runs([sweep])
    if not runs:
        print(f"error: no finished runs under {sweep}")
        return 1
    rows = aggregate(runs)
    baselines = baselines_for(rows)
    pictures = {}
    for metric, members in by_task(rows).values():
        for row in members:
            stem = f"{row.model}-{row.dataset}"
            pictures[(row.model, row.dataset)] = save_pictures(
                best_run(row, metric), out / "results", stem
            )
    summary, failed = sweep_summary(sweep)
    quick = profile != "full"
    head = [
        f"# Results{' (' + profile + ' profile)' if quick else ''}",
        "",
        *(
            [
                (
                    f"**{profile} profile**: short runs on subsets, to show that the machinery"
                    " works; not the numbers the models reach (`zoo results`: the full profile)."
                ),
                "",
            ]
            if quick
            else []
        ),
        (
            f"Written by `zoo results profile={profile} seeds={seeds}` on "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
            + (
                f"in {duration(seconds)} "
                if seconds is not None
                else f"from {sweep}, whose runs took {duration(runs_span(sweep))} "
            )
            + f"({len(runs)} runs)."
        ),
        f"Machine: {machine()}. Versions: {versions()}.",
        (
            "Each point is `python train.py model=<model> data=<data> seed=<seed>` with "
            + ", ".join(f"`{item}`" for item in suite.overrides)
            + "".join(
                f"; {group} {key}: " + ", ".join(f"`{item}`" for item in items)
                for group in ("data", "model", "pairs")
                for key, items in suite[group].items()
            )
            + "."
        ),
        (
            "Each row: mean ± sample standard deviation over its seeds of the test metrics (of"
            " the best checkpoint), parameters, fit seconds and training samples/s; baselines"
            " (italic) are computed on the same splits by zoo.metrics.baselines."
        ),
        "",
        "```",
        summary,
        *(f"skipped {path}: {why}" for path, why in skipped),
        "```",
    ]
    md = markdown(rows, baselines, dict(suite.published), pictures, head, out)
    note = leads(rows, baselines)
    if note:
        md += "\n## Against the baselines\n\n" + "\n".join(note) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(md)
    write_csv(rows, baselines, out / "results.csv")
    took = f" ({duration(seconds)})" if seconds is not None else ""
    print(f"results: {out / 'results.md'}, {out / 'results.csv'}{took}")
    return 1 if failed else 0


def runs_span(sweep: Path) -> float:
    """Seconds from the first run's start to the last one's end: the oldest TensorBoard event
    file's creation time (in its name) to the newest one's last write."""
    events = list(sweep.rglob("events.out.tfevents.*"))
    start = min(float(path.name.split(".")[3]) for path in events)
    return max(path.stat().st_mtime for path in events) - start


def main(argv: list[str] | None = None) -> int:
    """`zoo results [key=value ...]`; --help for the options."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        return results(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
