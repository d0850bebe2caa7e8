"""One training path: config -> datamodule -> model -> trainer; fit, test, summarise."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, Timer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from zoo.errors import ConfigError, DoesNotFitError, first_line
from zoo.lightning_private import tensorboard_file_writer
from zoo.registry import accepted_inputs, build_model
from zoo.run.checkpoints import (
    AtomicCheckpointIO,
    checkpoint_dir,
    one_process_per_folder,
    resolve_ckpt_path,
)
from zoo.run.cluster import slurm_requeued
from zoo.run.folders import (
    NOT_APPLICABLE,
    current_overrides,
    holds_record,
    record_point,
    sweeping,
    write_record,
)
from zoo.run.hparams import flatten, hparams_summaries, settings
from zoo.run.validation import check_config
from zoo.tasks import Task


def build(target: DictConfig, **kwargs: Any) -> Any:
    """Instantiate `target`, turning constructor errors into one clear ConfigError."""
    with config_errors(target):
        return instantiate(target, **kwargs, _convert_="all", _recursive_=False)


@contextmanager
def config_errors(target: Any) -> Iterator[None]:
    """Constructor errors (also Hydra-wrapped ones) as one ConfigError line."""
    try:
        yield
    except DoesNotFitError:
        raise
    except InstantiationException as error:
        if error.__cause__ is None:  # Hydra's own refusal (its blocklist): every line of it
            raise ConfigError(" ".join(str(error).split())) from None
        raise ConfigError(explain(target, error.__cause__)) from None
    except (ValueError, TypeError) as error:
        raise ConfigError(explain(target, error)) from None


def explain(target: Any, error: BaseException) -> str:
    """The constructor's message; for an unknown keyword, which class does not take it."""
    unknown = re.search(
        r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(error)
    )
    if isinstance(error, TypeError) and unknown:
        return (
            f"{unknown.group(1)} takes no option {unknown.group(2)!r}; "
            f"its yaml in conf/ lists the options it takes"
        )
    return first_line(str(error))  # torch's C++ errors append a stack of frames


def container(config: Any) -> Any:
    """A plain dict/list copy of a config node; other values as they are."""
    return OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else config


def choice(group: str) -> str | None:
    """The name chosen for a config group (model=cnn -> "cnn"), when run through Hydra."""
    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get(group)


def build_run(config: DictConfig) -> tuple[L.LightningDataModule, Task, L.Trainer]:
    """Datamodule first (it says what the network needs), then the task, then the trainer."""
    check_config(config)
    L.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = build(config.data)
    try:
        datamodule.setup("fit")
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        raise ConfigError(str(error)) from None
    serve_what_the_model_takes(datamodule, config.model)
    with config_errors(config.model):
        model = build_model(
            config.model,
            datamodule.spec,
            container(config.optimizer),
            container(config.get("scheduler")),
            name=choice("model"),
        )
    logger = build(config.logger, **graph_option(config, model)) if config.get("logger") else False
    callbacks = [build(c) for c in (config.get("callbacks") or {}).values() if c]
    if not logger:  # logger=null: nothing for a learning-rate monitor to write to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = build(
        config.trainer,
        logger=logger,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        **ddp_options(model, config),
    )
    drop_nvml_check_without_gpu(trainer)
    check_precision(trainer)
    if trainer.strategy.root_device.type == "cpu":
        torch.set_num_threads(cpu_threads(config.get("threads", "auto"), trainer))
    return datamodule, model, trainer


def graph_option(config: DictConfig, model: Task) -> dict[str, bool]:
    """`log_graph=False` for a task with no example input to trace (GANs, token or tree inputs),
    where Lightning's `log_graph` would only warn."""
    if config.logger.get("log_graph") and model.example_input_array is None:
        return {"log_graph": False}
    return {}


def cpu_threads(threads: int | str, trainer: L.Trainer) -> int:
    """The torch threads for a CPU run: `threads`, or for auto half the cores this process may
    use, at most 4, shared among the node's processes (the CPU DDP ones)."""
    if threads != "auto":
        return int(threads)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    processes = max(1, getattr(trainer, "num_devices", 1))
    return max(1, min(4, (cores or 1) // 2 // processes))


def ddp_options(model: Task, config: DictConfig) -> dict[str, str]:
    """`strategy=ddp` for a task with several backward passes per step (GANs): DDP must find
    the parameters each pass leaves unused (docs/ARCHITECTURE.md, "Several processes")."""
    if config.trainer.get("strategy") == "ddp" and model.ddp_finds_unused_parameters:
        return {"strategy": "ddp_find_unused_parameters_true"}
    return {}


def serve_what_the_model_takes(datamodule: L.LightningDataModule, model: DictConfig) -> None:
    """Data that can come in several forms (`forms`, `use`; ListOps: trees or tokens) switches
    to the first form the model accepts."""
    accepts = accepted_inputs(model)
    forms = getattr(datamodule, "forms", ())
    if accepts and datamodule.spec.inputs not in accepts:
        usable = [form for form in forms if form in accepts]
        if usable:
            datamodule.use(usable[0])
            datamodule.setup("fit")


def drop_nvml_check_without_gpu(trainer: L.Trainer) -> None:
    """Undo Lightning's PYTORCH_NVML_BASED_CUDA_CHECK=1 for CPU runs on machines with no GPU.

    Lightning sets it (at import) so that CUDA checks do not initialise CUDA before a fork. With
    it, every torch.cuda.is_available() tries to load NVML, and torch's Adam-family optimizers
    call that in every step (a CUDA-graph check), a measurable share of a small step
    (bench/RESULTS.md). Without a GPU there is no CUDA to keep fork-safe.
    """
    if trainer.strategy.root_device.type == "cpu" and not torch.cuda.is_available():
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)


def hparams_table(config: DictConfig, model: Task) -> dict[str, Any]:
    """This run's row of the HPARAMS tab: names, each network's real learning rate, options."""
    lrs = {name: c.get("lr") for name, c in model.optimizer_configs().items()}
    scheduler = config.get("scheduler")
    options = {key: container(config.get(key)) for key in ("model", "optimizer", "scheduler")}
    return settings(flatten(options)) | {
        "model": choice("model") or model.name,
        "net": model.name,
        "task": type(model).__name__,
        "data": choice("data") or config.data._target_.rsplit(".", 1)[-1],
        "optimizer": config.optimizer._target_.rsplit(".", 1)[-1],
        "scheduler": scheduler._target_.rsplit(".", 1)[-1] if scheduler else "none",
        "data.batch_size": config.data.batch_size,
        "max_epochs": config.trainer.max_epochs,
        "seed": config.seed,
        **({"lr": lrs.popitem()[1]} if len(lrs) == 1 else {f"lr.{k}": v for k, v in lrs.items()}),
    }


def log_hparams_table(logger: TensorBoardLogger, table: dict[str, Any], metrics: dict) -> None:
    """TensorBoard's hparams tab (zoo.run.hparams): only the layout and this run's row are written;
    the values come from the metrics' own scalar series."""
    writer = tensorboard_file_writer(logger.experiment)
    for summary in hparams_summaries(table, list(metrics)):
        writer.add_summary(summary)
    writer.flush()


def named(model: Task) -> str:
    """The architecture's yaml name and its networks: `lstm (RecurrentNet)`."""
    name = choice("model")
    return f"{name} ({model.name})" if name and name != model.name else model.name


def final_metrics(trainer: L.Trainer, prefix: str) -> dict[str, float]:
    """The trainer's latest epoch-level metrics whose names start with `prefix`."""
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}


def check_fresh_folder(trainer: L.Trainer, resuming: bool, output_dir: str | Path) -> None:
    """Refuse to start a new run over an earlier run's checkpoints or in a folder holding an
    earlier run's record (resuming that run is fine): its record and every checkpoint's
    recorded overrides would describe the other run. Rank 0 judges: the other DDP processes
    start later, in the folder rank 0 has already written its record to."""
    if resuming or not trainer.is_global_zero:
        return
    folder = checkpoint_dir(trainer)
    if folder is not None and any(folder.glob("*.ckpt")):
        held = f"{folder} already holds an earlier run's checkpoints"
    elif holds_record(Path(output_dir)):
        held = f"{output_dir} already holds an earlier run's record (.hydra/)"
    else:
        return
    raise ConfigError(
        f"{held}; resume that run with ckpt_path=last (and its overrides), or leave "
        "hydra.run.dir unset for a new folder"
    )


def check_precision(trainer: L.Trainer) -> None:
    """Half precision on a CPU: the inputs stay float32 and the first layer fails mid-run."""
    precision = str(trainer.precision)
    if trainer.strategy.root_device.type == "cpu" and precision.startswith("16"):
        raise ConfigError(
            f"trainer.precision={precision} needs a GPU; on a CPU use 32-true, bf16-mixed or "
            "bf16-true"
        )


def skip_if_sweeping(error: DoesNotFitError, config: DictConfig) -> bool:
    """In a sweep (-m), a model/data pair that cannot work is skipped, not failed: say so, and
    leave the reason in the run's folder (compare.py lists it as not applicable)."""
    if not sweeping():
        return False
    record_point(config.paths.output_dir, NOT_APPLICABLE, error)
    print(f"not applicable, skipped: {error}")
    return True


def train(config: DictConfig) -> dict[str, float]:
    """Fit and test the configured model; print one summary line; return the final metrics."""
    try:
        datamodule, model, trainer = build_run(config)
    except DoesNotFitError as error:
        if skip_if_sweeping(error, config):
            return {}
        raise ConfigError(str(error)) from None
    ckpt_path = resolve_ckpt_path(
        config.get("ckpt_path"), config.paths.output_dir, model, current_overrides()
    )
    check_fresh_folder(
        trainer, ckpt_path is not None or slurm_requeued(trainer), config.paths.output_dir
    )
    folder = Path(config.paths.output_dir)
    with one_process_per_folder(folder, take=trainer.is_global_zero):
        return fit_and_test(config, datamodule, model, trainer, ckpt_path)


def fit_and_test(
    config: DictConfig,
    datamodule: L.LightningDataModule,
    model: Task,
    trainer: L.Trainer,
    ckpt_path: str | None,
) -> dict[str, float]:
    """Fit (from `ckpt_path` when resuming), test the best checkpoint, print the summary."""
    if trainer.is_global_zero:
        write_record(Path(config.paths.output_dir), config)
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit as stop:  # Lightning exits after Ctrl-C (1) or SIGTERM (no code)
        if trainer.interrupted:  # the shell's convention: 128 + the signal's number
            sigterm = isinstance(stop, SIGTERMException)
            raise SystemExit(128 + (signal.SIGTERM if sigterm else signal.SIGINT)) from None
        raise
    timers = [c for c in trainer.callbacks if isinstance(c, Timer)]  # RunStats: compare.py's too
    fit_seconds = timers[0].time_elapsed("train") if timers else time.perf_counter() - start
    metrics = final_metrics(trainer, "val/")
    best = trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path
    trainer.enable_autolog_hparams = False  # logged by fit; testing would add a second graph
    trainer.test(
        model,
        datamodule=datamodule,
        ckpt_path=best or None,
        verbose=False,
        weights_only=True,
    )
    metrics |= final_metrics(trainer, "test/")
    seconds = time.perf_counter() - start
    if not trainer.is_global_zero:  # other DDP processes: rank 0 writes and prints
        return metrics
    if isinstance(trainer.logger, TensorBoardLogger):
        log_hparams_table(trainer.logger, hparams_table(config, model), metrics)
    parameters = sum(p.numel() for p in model.parameters())
    metrics |= model.references  # what the data says the scores mean (a language model: xz)
    shown = ("test/", "reference/")
    scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if k.startswith(shown))
    print(
        f"{named(model)} on {datamodule.name}: {parameters:,} parameters, {scores}, "
        f"{trainer.current_epoch} epochs, fit {fit_seconds:.1f} s, total {seconds:.1f} s, "
        f"logs: {Path(config.paths.output_dir).resolve()}"
    )
    return metrics
