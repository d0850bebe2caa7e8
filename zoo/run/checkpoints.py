"""Checkpoints: safe reading (plain data only, one clear line when it fails), where a run keeps
them, and the command that resumes a run from one."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no lock
    fcntl = None

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf
from torch import nn

from zoo.errors import CheckpointError, CheckpointWriteError, ConfigError, first_line
from zoo.loading import read_checkpoint
from zoo.run.naming import hydra_value
from zoo.tasks import learning_rate_options

# What a resume may change: how long and where it runs, how it logs and checkpoints, and the
# learning rate (the fix for a NaN; also the model options tasks declare learning rates, see
# `resumable_keys`). Everything else defines the experiment and must match. A key matches
# exactly; one ending in "." is a group and matches every key under it.
RESUMABLE_KEYS = (
    "ckpt_path",
    "hydra.",
    "paths.",
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.limit_train_batches",
    "trainer.limit_val_batches",
    "trainer.limit_test_batches",
    "trainer.limit_predict_batches",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "data.num_workers",
    "data.loader",
    "data.pin_memory",
    "data.persistent_workers",
    "optimizer.lr",
    "callbacks.",
    "logger.",
    "threads",
)


def resumable_keys() -> tuple[str, ...]:
    """RESUMABLE_KEYS and `model.<option>` for each learning-rate option a task declares."""
    return (*RESUMABLE_KEYS, *(f"model.{option}" for option in learning_rate_options()))


def override_key(override: str) -> str:
    """ "+model.x=1" -> "model.x"; "~callbacks.y" -> "callbacks.y"."""
    return override.split("=", 1)[0].lstrip("+~")


def resumable(key: str) -> bool:
    """Whether a resume may change `key`: it is one of `resumable_keys()`, or lies in a group there
    ("callbacks." takes callbacks.x.y); `optimizer.lr_decay` is not `optimizer.lr`."""
    return any(
        key == rule or (rule.endswith(".") and key.startswith(rule)) or key == rule.rstrip(".")
        for rule in resumable_keys()
    )


def experiment_overrides(overrides: list[str]) -> dict[str, str]:
    """The overrides that define the experiment (not the ones a resume may change), by key."""
    return {override_key(o): o for o in overrides if not resumable(override_key(o))}


def resume_conflict(recorded: list[str], given: list[str]) -> str | None:
    """What differs between the overrides a run was started with and a resume's, or None."""
    before, now = experiment_overrides(recorded), experiment_overrides(given)
    for key in sorted(before.keys() | now.keys()):
        if before.get(key) != now.get(key):
            there = before.get(key, f"{key} not set")
            here = now.get(key, f"{key} not set")
            return f"{there} there, {here} here"
    return None


def checkpoint_dir(trainer: L.Trainer) -> Path | None:
    """The folder of the trainer's ModelCheckpoint, if it has one."""
    callback = trainer.checkpoint_callback
    return Path(callback.dirpath) if callback is not None and callback.dirpath else None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic for local files: the checkpoint goes to a
    temporary file beside its target, then replaces it in one rename. A full disk or a read-only
    folder ends with one line naming the path, and no truncated checkpoint is left behind.

    (Lightning's own writer stages local files in the system temp folder and moves them, which is
    a copy across file systems: a full disk leaves a truncated file at the target.)
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):  # remote storage: fsspec's own transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
        except BaseException as error:  # any failure: torch.save's own ("unexpected pos") too
            with contextlib.suppress(OSError):  # (a folder that cannot be made has none)
                partial.unlink(missing_ok=True)
            if not isinstance(error, Exception):  # Ctrl-C, SystemExit: no partial file, go on
                raise
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise CheckpointWriteError(
                f"cannot write checkpoint {path}: {first_line(str(reason))} "
                f"({free_space(path.parent)}); the previous one, if any, is intact"
            ) from None


def free_space(folder: Path) -> str:
    """ "1.2 GiB free on <folder>", or why that is unknown."""
    try:
        usage = shutil.disk_usage(folder)
    except OSError as error:
        return f"free space unknown: {error.strerror or error}"
    return f"{usage.free / 2**30:.1f} GiB free on {folder}"


@contextmanager
def one_process_per_folder(folder: Path, take: bool = True) -> Iterator[None]:
    """Hold `folder`/.lock while this process trains there (`take`: DDP's rank 0 takes it for
    its group): a second process, say a second resume of the same run, stops with one
    ConfigError line instead of mixing its checkpoints and event files into the first's. The
    lock is the kernel's (flock): a process that dies, even by SIGKILL, holds it no longer."""
    if not take or fcntl is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "?"
            raise ConfigError(
                f"another process (pid {holder}) is training in {folder}; wait for it to end or "
                "stop it (two runs in one folder would mix their checkpoints and logs)"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def check_fits(path: str | Path, checkpoint: dict[str, Any], model: nn.Module) -> None:
    """One CheckpointError line when the checkpoint's weights do not fit `model` (another
    architecture or size), naming the command that resumes the run that wrote it."""
    saved, current = checkpoint.get("state_dict", {}), model.state_dict()
    mismatch = next(
        (
            key
            for key in sorted(saved.keys() | current.keys())
            if key not in saved or key not in current or saved[key].shape != current[key].shape
        ),
        None,
    )
    if mismatch is None:
        return
    if mismatch not in current:
        detail = f"{mismatch} is only there"
    elif mismatch not in saved:
        detail = f"{mismatch} is only here"
    else:
        there, here = list(saved[mismatch].shape), list(current[mismatch].shape)
        detail = f"{mismatch} is {there} there, {here} here"
    overrides = checkpoint.get("zoo_overrides")
    how = (
        resume_command(Path(path), overrides)
        if overrides is not None
        else "the overrides of the run that wrote it"
    )
    raise CheckpointError(
        f"cannot resume from {path}: it holds another model or size than this run's "
        f"{getattr(model, 'name', type(model).__name__)} ({detail}); resume with: {how}"
    )


def resolve_ckpt_path(
    ckpt_path: str | None,
    output_dir: str | Path,
    model: nn.Module,
    overrides: list[str] | None = None,
) -> str | None:
    """ "last" -> <output_dir>/checkpoints/last.ckpt; check that the file loads safely, that
    the command (`overrides`) keeps the experiment, and that the weights fit."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        path = Path(output_dir) / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise CheckpointError(
                f"nothing to resume: {path} does not exist; pass the interrupted run's folder "
                "as hydra.run.dir=<folder> (with the same overrides)"
            )
        ckpt_path = str(path)
    checkpoint = read_checkpoint(ckpt_path)
    check_same_experiment(ckpt_path, checkpoint, overrides)
    check_fits(ckpt_path, checkpoint, model)
    return str(ckpt_path)


def check_same_experiment(
    path: str | Path, checkpoint: dict[str, Any], overrides: list[str] | None
) -> None:
    """One CheckpointError line when a resume's overrides change what the run that wrote the
    checkpoint was (data, batch size, optimizer, model options): only RESUMABLE_KEYS may differ."""
    recorded = checkpoint.get("zoo_overrides")
    if overrides is None or recorded is None:
        return
    conflict = resume_conflict(recorded, overrides)
    if conflict:
        raise CheckpointError(
            f"cannot resume from {path} with other settings than its run had ({conflict}); "
            f"resume with: {resume_command(Path(path), recorded)}"
        )


def hydra_overrides(run_dir: Path) -> list[str] | None:
    """The command-line overrides Hydra recorded for the run in `run_dir`; None outside Hydra."""
    record = run_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(record)] if record.is_file() else None


def train_program() -> list[str]:
    """How the user started training: `zoo train` (the console script sets argv[0] so), else
    `python train.py`."""
    return ["zoo", "train"] if sys.argv and sys.argv[0] == "zoo train" else ["python", "train.py"]


def resume_command(checkpoint: Path, overrides: list[str] | None) -> str:
    """How to resume from `checkpoint`: with train.py, the run's own overrides plus the
    checkpoint and the run folder; without Hydra, Lightning's ckpt_path."""
    if overrides is None:
        return f"trainer.fit(model, datamodule, ckpt_path={str(checkpoint)!r})"
    kept = [o for o in overrides if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
    target = "last" if checkpoint.name == "last.ckpt" else str(checkpoint)
    run_dir = checkpoint.parent.parent
    return shlex.join(
        [
            *train_program(),
            *kept,
            f"ckpt_path={hydra_value(target)}",
            f"hydra.run.dir={hydra_value(str(run_dir))}",
        ]
    )
