"""A run's folder and its record: unique names, the record written once by the run that owns
it, what a resume may change, and no empty folder left by a refused start."""

from __future__ import annotations

import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from zoo.run.naming import readable_overrides

NOT_APPLICABLE = "not_applicable.txt"  # a sweep point whose model and data cannot meet
FAILED = "failed.txt"  # a sweep point refused with a bad value

# One token per process, so two runs (or sweeps) started in the same second never share a folder.
# zoo.run.resolvers serves it as ${run_id:}, cached like Hydra's ${now:}.
RUN_ID = secrets.token_hex(3)


def run_name(*parts: str) -> str:
    """`parts[0]`, the run's readable overrides and the other parts, joined by `_` (empty ones
    left out): a Hydra resolver, `${run_name:${hydra.job.num},${now:...}}`."""
    overrides = readable_overrides(current_overrides() or [])
    return "_".join(str(part) for part in (parts[0], overrides, *parts[1:]) if str(part))


def project_root() -> str:
    """The checkout holding train.py and conf/ when the zoo runs from one (logs/ and data/ go
    there, whatever the working directory); else the working directory."""
    root = Path(__file__).resolve().parents[2]
    return str(root if (root / "conf").is_dir() and (root / "train.py").is_file() else Path.cwd())


RECORD = ".hydra"


def current_overrides() -> list[str] | None:
    """This run's command-line overrides; None outside Hydra."""
    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def write_record(folder: Path, config: object) -> None:
    """Write the run's record (.hydra/config.yaml, hydra.yaml, overrides.yaml) unless it is
    there: the run that created the folder wrote it, and a resume never rewrites it."""
    if not HydraConfig.initialized():
        return
    record = folder / RECORD
    if (record / "overrides.yaml").exists():
        return
    record.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, record / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": HydraConfig.get()}), record / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(current_overrides()), record / "overrides.yaml")


NEW_FOLDERS: list[Path] = []  # the run folder and those of its parents this process creates


def make_folder(folder: Path, what: str) -> None:
    """Create `folder` (noting which parts are new) or exit with one line if it cannot be."""
    NEW_FOLDERS[:] = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{RUN_ID}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        print(f"error: cannot write the {what} {folder}: {error.strerror}", file=sys.stderr)
        raise SystemExit(2) from None


def forget_refused_run() -> None:
    """After a refused start: remove the folders this process made, unless they hold a
    checkpoint (the run folder may hold its record and first events by then)."""
    for folder in NEW_FOLDERS:  # the run folder first, then its new parents
        if not folder.is_dir() or any(folder.rglob("*.ckpt")):
            continue
        if folder == NEW_FOLDERS[0]:
            shutil.rmtree(folder)
        elif not any(folder.iterdir()):  # a parent another run has not written into meanwhile
            folder.rmdir()
    NEW_FOLDERS.clear()


def sweeping() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_point(output_dir: str | Path, record: str, reason: object) -> None:
    """Leave why a sweep point did not run (`record`: NOT_APPLICABLE or FAILED) in its folder,
    for the sweep's summary and compare.py."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / record).write_text(f"{reason}\n")


def refuse(error: Exception, output_dir: str | Path, keep: bool = False) -> None:
    """One `error:` line. A single run exits 2 and, unless `keep`, leaves no folder behind; in
    a sweep the point is recorded as failed (failed.txt in its folder) and the sweep goes on."""
    print(f"error: {error}", file=sys.stderr)
    if sweeping():
        record_point(output_dir, FAILED, error)
        return
    if not keep:
        forget_refused_run()
    raise SystemExit(2)


def sweep_summary(sweep_dir: Path, states: dict[str, str] | None = None) -> tuple[str, int]:
    """A few lines on how each point of a sweep ended, and how many failed. The points are the
    run folders (not submitit's `.submitit`) or, where more, submitit's jobs; a job that ended
    without a result (cancelled, or killed at its time limit) counts as failed, with its SLURM
    state where `states` (by job id) has it."""
    folders = sorted(p for p in sweep_dir.iterdir() if p.is_dir()) if sweep_dir.is_dir() else []
    points = [p for p in folders if not p.name.startswith(".")]
    skipped, failed = [], []
    for point in points:
        if (point / NOT_APPLICABLE).is_file():
            skipped.append(f"  not applicable: {point.name}: {first_line(point / NOT_APPLICABLE)}")
        elif (point / FAILED).is_file():
            failed.append(f"  failed: {point.name}: {first_line(point / FAILED)}")
    jobs = submitit_jobs(sweep_dir / ".submitit")
    unfinished = [job for job in jobs if not any(job.glob("*_result.pkl"))]
    count = max(len(points), len(jobs))
    ran = count - len(skipped) - len(failed) - len(unfinished)
    states = states or {}
    failed += [
        f"  did not finish: job {job.name}{' ' + states[job.name] if job.name in states else ''}"
        f" (its log: {job})"
        for job in unfinished
    ]
    head = (
        f"sweep {sweep_dir}: {count} points, {ran} ran, {len(skipped)} not applicable, "
        f"{len(failed)} failed"
    )
    return "\n".join([head, *skipped, *failed]), len(failed)


def submitit_jobs(folder: Path) -> list[Path]:
    """submitit's folder of each job of a sweep (hydra/launcher=slurm or submitit_local): the
    one holding what the job runs (a job array's submission script has a folder of its own)."""
    return sorted(p.parent for p in folder.glob("*/*_submitted.pkl"))


def first_line(path: Path) -> str:
    return (path.read_text().strip().splitlines() or [""])[0]


def check_log_dir(config: DictConfig) -> None:
    """An empty paths.log_dir (or root_dir) would put runs at the filesystem's root: one line
    and exit 2 before any folder is made."""
    for key in ("root_dir", "log_dir"):
        value = OmegaConf.select(config, f"paths.{key}", throw_on_missing=False)
        if value is not None and not str(value).strip():
            print(f"error: paths.{key} is empty; give a folder", file=sys.stderr)
            raise SystemExit(2)


def holds_record(folder: Path) -> bool:
    """Whether `folder` holds a run's record (.hydra/), written by the run that made it."""
    return (folder / RECORD / "overrides.yaml").exists() or (
        folder / RECORD / "config.yaml"
    ).exists()


class RunFolders(Callback):
    """Hydra callback: make the run's (or sweep's) folder before Hydra does, so an unwritable
    path is one line, not a traceback; after a sweep, say how every point ended."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # Hydra sets it only later, in run_job
        check_log_dir(config)
        make_folder(Path(str(config.hydra.run.dir)), "run folder")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        check_log_dir(config)
        make_folder(Path(str(config.hydra.sweep.dir)), "sweep folder")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summary, failed = sweep_summary(Path(str(config.hydra.sweep.dir)))
        print(summary)
        if failed:
            raise SystemExit(2)
