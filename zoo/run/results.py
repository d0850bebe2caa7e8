"""The zoo's results table: the suite of model x dataset points (conf/results/), its progress as
one Hydra multirun, and the aggregation of its finished runs over seeds, beside baselines
computed on the same splits, into results.md, results.csv and pictures."""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from zoo.metrics.baselines import Baselines, data_baselines
from zoo.registry import CONFIG_DIR, accepted_inputs, model_config
from zoo.run.search import direction
from zoo.tasks import task_named

SUITE_DIR = CONFIG_DIR / "results"
STATS = {  # run-level scalars every finished run logs (zoo.run.callbacks.RunStats)
    "parameters": "run/parameters",
    "fit seconds": "run/fit_seconds",
    "samples/s": "run/samples_per_second",
}
DEVICE_FILE = "device.txt"  # what a point trained on, written by Progress


# --- what the tasks declare: which test metric heads a task's table, which way is better ----------
def headline(task: str, logged: Iterable[str]) -> str:
    """The test metric that heads `task`'s table: the first of the task's declared
    `test_metric` the runs logged (else any test metric they logged)."""
    logged = set(logged)
    cls = task_named(task)
    declared = cls.test_metric if cls is not None else ()
    return next((m for m in declared if m in logged), min(logged) if logged else "")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` (e.g. test/acc) is better, as the tasks declare it."""
    return direction(metric) == "maximize"


# --- the suite -----------------------------------------------------------------------------------
def load_suite(profile: str, directory: Path = SUITE_DIR) -> DictConfig:
    """suite.yaml with the profile's yaml merged over it; ValueError for an unknown profile."""
    path = directory / f"{profile}.yaml"
    if profile == "suite" or not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml") if p.stem != "suite")
        raise ValueError(f"unknown profile {profile!r}; profiles: {', '.join(known)}")
    base, chosen = OmegaConf.load(directory / "suite.yaml"), OmegaConf.load(path)
    overrides = [*base.get("overrides", []), *chosen.get("overrides", [])]
    suite = OmegaConf.merge({"data": {}, "model": {}, "pairs": {}, "published": {}}, base, chosen)
    suite.overrides = overrides
    return suite


def data_inputs(name: str, overrides: list[str] = ()) -> tuple[str, ...]:
    """The kinds of input dataset `name` (conf/data/<name>.yaml) can give: each of its forms
    (ListOps: trees or tokens), else its spec's (set up here: tables and text are read)."""
    from hydra import compose, initialize_config_dir

    from zoo.run.resolvers import register

    register()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        config = compose("config", overrides=[f"data={name}", *overrides])
    datamodule = instantiate(config.data, _convert_="all", _recursive_=False)
    forms = getattr(datamodule, "forms", None)
    return tuple(forms) if forms else (datamodule.spec.inputs,)


def suite_pairs(
    models: list[str], datasets: list[str], inputs_of: Callable[[str], tuple[str, ...]]
) -> list[tuple[str, str]]:
    """(model, dataset) for every model whose `accepts` meets one of the dataset's inputs."""
    gives = {name: inputs_of(name) for name in datasets}
    pairs = []
    for name in models:
        accepts = accepted_inputs(model_config(name))
        for dataset in datasets:
            if accepts is None or set(accepts) & set(gives[dataset]):
                pairs.append((name, dataset))
    return pairs


def point_name(model: str, dataset: str) -> str:
    return f"{model}-{dataset}"


def point_overrides(suite: DictConfig, model: str, dataset: str) -> list[str]:
    """What the profile adds to one point's default command: its dataset's, its model's and
    that pair's (`pairs: {gpt-listops: [...]}`) overrides, in that order."""
    return [
        *suite.data.get(dataset, []),
        *suite.model.get(model, []),
        *suite.pairs.get(point_name(model, dataset), []),
    ]


def write_points(folder: Path, pairs: list[tuple[str, str]], suite: DictConfig) -> list[str]:
    """One config per pair in `folder`/point/ (a Hydra config group: `+point=cnn-digits`):
    it chooses the model and data and adds the profile's overrides for them."""
    group = folder / "point"
    group.mkdir(parents=True, exist_ok=True)
    names = []
    for model, dataset in pairs:
        name = point_name(model, dataset)
        dotlist = [item.lstrip("+") for item in point_overrides(suite, model, dataset)]
        values = OmegaConf.to_container(OmegaConf.from_dotlist(dotlist))
        text = "# @package _global_\n" + yaml.safe_dump(
            {"defaults": [{"override /model": model}, {"override /data": dataset}], **values},
            sort_keys=False,
        )
        (group / f"{name}.yaml").write_text(text)
        names.append(name)
    return names


def sweep_arguments(
    suite_dir: Path,
    sweep_dir: Path,
    points: list[str],
    seeds: list[int],
    overrides: list[str],
    started: float,
) -> list[str]:
    """The `zoo train -m` arguments that run every point over every seed, with progress."""
    progress = "+hydra.callbacks.results_progress"
    return [
        "-m",
        f"hydra.searchpath=[file://{suite_dir}]",
        f"hydra.sweep.dir={sweep_dir}",
        f"{progress}._target_={Progress.__module__}.{Progress.__qualname__}",
        f"{progress}.total={len(points) * len(seeds)}",
        f"{progress}.started={started}",
        f"+point={','.join(points)}",
        f"seed={','.join(map(str, seeds))}",
        *overrides,
    ]


def duration(seconds: float) -> str:
    """2h05m, 3m12s, 41s."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress(Callback):
    """Hydra callback: after each point of the suite, which point of how many, elapsed time and
    the time left at this pace; and what the point trained on (device.txt in its folder)."""

    def __init__(self, total: int, started: float) -> None:
        self.total = int(total)
        self.started = float(started)
        self.done = 0

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        self.done += 1
        number = int(config.hydra.job.get("num") or 0) + 1
        done = max(self.done, number)  # a launcher may run each job in a process of its own
        elapsed = time.time() - self.started
        left = elapsed / done * (self.total - done)
        choices = config.hydra.runtime.choices
        print(
            f"results: point {done} of {self.total} done ({choices.get('model')} on "
            f"{choices.get('data')}, seed {config.get('seed')}), {duration(elapsed)} elapsed, "
            f"about {duration(left)} left",
            flush=True,
        )
        folder = Path(str(config.hydra.runtime.output_dir))
        if folder.is_dir():
            (folder / DEVICE_FILE).write_text(device_name(config) + "\n")


def device_name(config: DictConfig) -> str:
    """The device a run with this config trained on: the GPU's name or `cpu`."""
    accelerator = str(config.get("trainer", {}).get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return "cpu"


# --- aggregation ---------------------------------------------------------------------------------
@dataclass
class Row:
    """One model on one dataset over seeds: every test metric and run statistic per seed."""

    task: str
    model: str
    dataset: str
    values: dict[str, list[float]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)

    def summary(self, metric: str) -> Summary | None:
        values = self.values.get(metric)
        return Summary.of(values) if values else None


@dataclass(frozen=True)
class Summary:
    """mean ± std (sample standard deviation over seeds; 0 for one), n, min, max."""

    mean: float
    std: float
    n: int
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), std, len(values), min(values), max(values))


def aggregate(runs: Iterable[Any]) -> list[Row]:
    """Rows by task, model and dataset from finished runs (zoo.cli.compare's Run: `scalars`,
    `hparams`, `model`, `dataset`, `folder`): each run's last test metrics and run stats."""
    rows: dict[tuple[str, str, str], Row] = {}
    for run in runs:
        task = str(run.hparams.get("task", "?"))
        row = rows.setdefault((task, run.model, run.dataset), Row(task, run.model, run.dataset))
        for tag, series in run.scalars.items():
            if series and (tag.startswith("test/") or tag in STATS.values()):
                row.values.setdefault(tag, []).append(series[-1][1])
        seed = run.hparams.get("seed")
        row.seeds.append(int(seed) if seed is not None else -1)
        row.folders.append(Path(run.folder))
        device = Path(run.folder) / DEVICE_FILE
        row.devices.add(device.read_text().strip() if device.is_file() else "?")
    return list(rows.values())


def by_task(rows: list[Row]) -> dict[str, tuple[str, list[Row]]]:
    """{"task: metric": (the headline metric, its rows by dataset, each dataset's best first)};
    a task whose rows head with different metrics (Supervised: test/acc, test/mse) gives one
    table for each."""
    tables: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        tables.setdefault((row.task, headline(row.task, row.values)), []).append(row)
    ordered = {}
    for (task, metric), members in sorted(tables.items()):
        sign = -1 if higher_is_better(metric) else 1

        def key(row: Row, metric: str = metric, sign: int = sign) -> tuple:
            found = row.summary(metric)
            return (row.dataset, found is None, sign * found.mean if found else 0.0, row.model)

        ordered[f"{task}: {metric}"] = (metric, sorted(members, key=key))
    return ordered


def best_run(row: Row, metric: str) -> Path:
    """The folder of the row's best seed by `metric`."""
    values = row.values.get(metric, [])
    if len(values) != len(row.folders):
        return row.folders[0]
    pick = max if higher_is_better(metric) else min
    return row.folders[values.index(pick(values))]


# --- baselines -----------------------------------------------------------------------------------
def recorded_data_config(folder: Path) -> DictConfig | None:
    """The data config a run recorded (.hydra/config.yaml), interpolations resolved as it ran."""
    record = folder / ".hydra" / "config.yaml"
    if not record.is_file():
        return None
    config = OmegaConf.load(record)
    return config.data


def baselines_for(rows: list[Row]) -> dict[str, Baselines]:
    """Baselines per dataset, on the splits the runs used: their recorded data config."""
    found: dict[str, Baselines] = {}
    for row in rows:
        if row.dataset in found:
            continue
        config = recorded_data_config(row.folders[0])
        if config is not None:
            datamodule = instantiate(config, _convert_="all", _recursive_=False)
            found[row.dataset] = data_baselines(datamodule)
    return found


# --- outputs -------------------------------------------------------------------------------------
def number(value: float, decimals: int | None = None) -> str:
    """4 significant figures (or `decimals` places); thousands separated from 1,000 on."""
    if not math.isfinite(value):
        return str(value)
    if decimals is None:
        decimals = places(value)
    return f"{value:,.{decimals}f}"


def places(value: float) -> int:
    """Decimal places that show `value` to 4 significant figures (none from 1,000 on)."""
    if value == 0 or not math.isfinite(value):
        return 4
    return max(0, 3 - math.floor(math.log10(abs(value))))


def mean_std(found: Summary | None) -> str:
    """`0.9401 ± 0.0177`: the std to the mean's decimal places; the mean alone for one seed."""
    if found is None:
        return "-"
    decimals = places(found.mean)
    if found.n == 1:
        return number(found.mean, decimals)
    return f"{number(found.mean, decimals)} ± {number(found.std, decimals)}"


def write_csv(rows: list[Row], baselines: dict[str, Baselines], path: Path) -> Path:
    """One line per model (or baseline) x dataset x metric: mean, std, seeds, min, max."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["task", "model", "dataset", "metric", "mean", "std", "seeds", "min", "max"])
        for row in sorted(rows, key=lambda r: (r.task, r.model, r.dataset)):
            for metric in sorted(row.values):
                s = Summary.of(row.values[metric])
                out.writerow(
                    [row.task, row.model, row.dataset, metric, s.mean, s.std, s.n, s.low, s.high]
                )
        for dataset, found in sorted(baselines.items()):
            for name, scores in found.items():
                for metric, value in sorted(scores.items()):
                    out.writerow(["baseline", name, dataset, metric, value, 0.0, 0, value, value])
    return path


def save_pictures(folder: Path, into: Path, stem: str) -> list[Path]:
    """The last image and text summaries of a run's TensorBoard events (sample grids,
    reconstructions, latent walk, confusion matrix, generated text) as PNG and .txt files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    events = EventAccumulator(str(folder), size_guidance={"images": 1, "tensors": 1})
    events.Reload()
    into.mkdir(parents=True, exist_ok=True)
    written = []
    for tag in events.Tags().get("images", []):
        if "worst" in tag:
            continue
        path = into / f"{stem}-{tag.replace('/', '_')}.png"
        path.write_bytes(events.Images(tag)[-1].encoded_image_string)
        written.append(path)
    for tag in events.Tags().get("tensors", []):
        if tag.endswith("text_summary"):
            text = tensor_util.make_ndarray(events.Tensors(tag)[-1].tensor_proto).flat[0]
            path = into / f"{stem}-{tag.split('/')[0]}.txt"
            lines = text.decode() if isinstance(text, bytes) else str(text)
            path.write_text("\n".join(line.removeprefix("    ") for line in lines.splitlines()))
            written.append(path)
    return written


def markdown(
    rows: list[Row],
    baselines: dict[str, Baselines],
    published: dict[str, list[dict[str, Any]]],
    pictures: dict[tuple[str, str], list[Path]],
    head: list[str],
    relative_to: Path,
) -> str:
    """results.md: the header lines, then one table per task: per dataset its rows best first,
    then the baselines on the same splits (italic rows) and published figures (notes)."""
    parts = [*head, ""]
    for task, (metric, members) in by_task(rows).items():
        others = sorted({m for r in members for m in r.values if m.startswith("test/")} - {metric})
        better = "higher" if higher_is_better(metric) else "lower"
        columns = ["model", "data", f"**{metric}**", *others, *STATS, "device", "seeds", "pictures"]
        parts += [
            f"## {task} ({better} is better), best first per dataset",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
        ]
        notes = []
        for dataset in dict.fromkeys(row.dataset for row in members):
            for row in (r for r in members if r.dataset == dataset):
                cells = row_cells(row, metric, others, pictures, relative_to)
                parts.append("| " + " | ".join(cells) + " |")
            for name, scores in baselines.get(dataset, {}).items():
                if metric in scores:
                    cells = [f"*{name}*", dataset, f"*{number(scores[metric])}*"]
                    cells += [number(scores[m]) if m in scores else "-" for m in others]
                    cells += ["-"] * (len(STATS) + 2) + ["baseline"]
                    parts.append("| " + " | ".join(cells) + " |")
            for figure in published.get(dataset, []):
                if figure["metric"] == metric:
                    notes.append(
                        f"- {dataset}, published: {figure['name']}: {metric} "
                        f"{number(figure['value'])}. Source: {figure['source']}. "
                        f"Comparable? {figure['comparable']}."
                    )
        parts += ["", *notes, ""] if notes else [""]
    return "\n".join(parts).rstrip() + "\n"


def row_cells(
    row: Row,
    metric: str,
    others: list[str],
    pictures: dict[tuple[str, str], list[Path]],
    relative_to: Path,
) -> list[str]:
    """A model's cells: the headline in bold, the other metrics, stats, device, seeds, links."""
    links = [
        f"[{p.stem.removeprefix(f'{row.model}-{row.dataset}-')}]"
        f"({p.relative_to(relative_to).as_posix()})"
        for p in pictures.get((row.model, row.dataset), [])
    ]
    return [
        row.model,
        row.dataset,
        f"**{mean_std(row.summary(metric))}**",
        *(mean_std(row.summary(m)) for m in others),
        *(
            number(row.summary(tag).mean, 0)
            if tag == STATS["parameters"] and row.summary(tag)
            else mean_std(row.summary(tag))
            for tag in STATS.values()
        ),
        ", ".join(sorted(row.devices)),
        str(len(row.seeds)),
        " ".join(links) or "-",
    ]


def leads(rows: list[Row], baselines: dict[str, Baselines]) -> list[str]:
    """Which models beat their dataset's best baseline on the headline metric and by how
    much, and where the spread over seeds is larger than that lead."""
    lines = []
    for metric, members in by_task(rows).values():
        sign = 1 if higher_is_better(metric) else -1
        for row in members:
            found = row.summary(metric)
            scored = {
                name: s[metric] for name, s in baselines.get(row.dataset, {}).items() if metric in s
            }
            if found is None or not scored:
                continue
            name, best = max(scored.items(), key=lambda item: sign * item[1])
            lead = sign * (found.mean - best)
            if abs(lead) < 1e-6 * max(1.0, abs(best)):
                lines.append(
                    f"- {row.model} on {row.dataset} ties {name} ({metric} {number(best)})"
                )
                continue
            verdict = "beats" if lead > 0 else "trails"
            spread = (
                f"; its spread over seeds (std {number(found.std)}) is larger than that"
                if found.n > 1 and found.std > abs(lead)
                else ""
            )
            lines.append(
                f"- {row.model} on {row.dataset} {verdict} the best baseline, {name} "
                f"({metric} {number(best)}), by {number(abs(lead))}{spread}"
            )
    return lines
