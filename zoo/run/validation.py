"""One check of a whole run config before anything is built: known top-level keys, every option
against the type its class declares (the constructors' type hints are the schema), and the few
values torch or Lightning would only reject mid-training."""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from zoo.errors import ConfigError

TOP_LEVEL_KEYS = {
    "model",
    "data",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "callbacks",
    "seed",
    "ckpt_path",
    "paths",
    "threads",
    "optimized_metric",  # what a search trial returns (conf/hparams_search/, zoo/search.py)
}
INTEGER_KEYS = ("seed", "trainer.max_epochs", "trainer.max_steps", "trainer.log_every_n_steps")
_UNCHECKED = object()  # a type hint this check does not judge (a class, a callable, Any, ...)


def check_config(config: DictConfig) -> None:
    """Raise one ConfigError line for the first value in `config` that cannot work."""
    unknown = sorted(set(config.keys()) - TOP_LEVEL_KEYS)
    if unknown:
        known = ", ".join(sorted(TOP_LEVEL_KEYS))
        raise ConfigError(f"unknown top-level key {unknown[0]!r}; the keys are {known}")
    for key in INTEGER_KEYS:
        value = OmegaConf.select(config, key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**32:
        raise ConfigError(f"seed must be in [0, 2**32), got {config.seed}")
    check_targets(config)
    check_paths(config)
    check_trainer(config.trainer)
    for section in ("data", "optimizer", "scheduler", "trainer", "logger"):
        node = config.get(section)
        if node:
            check_types(section, node)
    for name, callback in (config.get("callbacks") or {}).items():
        if callback:
            check_types(f"callbacks.{name}", callback)
    threads = config.get("threads", "auto")
    counted = isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
    if threads != "auto" and not counted:
        raise ConfigError(f"threads must be auto or an integer >= 1, got {threads!r}")
    check_types("model", config.model, extra=task_classes())
    for key, node in config.model.items():  # a task's networks: `_target_` + options each
        if isinstance(node, DictConfig) and node.get("_target_"):
            check_types(f"model.{key}", node)
    check_learning_rates(config)
    if config.get("scheduler"):
        check_scheduler(OmegaConf.to_container(config.scheduler, resolve=True), config.optimizer)


def task_classes() -> list[type]:
    """The tasks a network yaml's options may go to besides its `_target_` (options the
    network does not take go to the task that trains it)."""
    from zoo.tasks import TASK_FOR_KIND  # the tasks import Lightning; only needed here

    return list(dict.fromkeys(TASK_FOR_KIND.values()))


def check_types(section: str, node: DictConfig, extra: Sequence[type] = ()) -> None:
    """Each option of a `_target_` node against its class's type hints (with `extra` classes
    consulted for options the target does not take)."""
    target = node.get("_target_")
    cls = locate(str(target)) if target else None
    if target and not isinstance(cls, type):  # an unknown class is reported where it is built
        return
    hints = {}
    for owner in [*extra, cls] if cls else extra:
        hints |= constructor_hints(owner)
    for key, value in node.items():
        if key == "_target_" or key not in hints:
            continue
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        if not matches(value, hints[key]):
            raise ConfigError(f"{section}.{key} must be {describe(hints[key])}, got {value!r}")


def constructor_hints(cls: type) -> dict[str, Any]:
    """The evaluated type hints of `cls.__init__`'s parameters; {} when they cannot be read."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - hints naming types only imported for type checkers
        return {}
    names = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in hints.items() if k in names}


def matches(value: Any, hint: Any) -> bool:
    """Whether a config value (plain data) fits a type hint; hints it cannot judge pass."""
    verdict = judge(value, hint)
    return verdict is _UNCHECKED or bool(verdict)


def judge(value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    if isinstance(hint, type) and issubclass(hint, os.PathLike):  # a path, in a config a string
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        verdicts = [judge(value, arg) for arg in args]
        if any(v is _UNCHECKED for v in verdicts):
            return _UNCHECKED
        return any(verdicts)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        item = args[0] if args and (origin is not tuple or args[-1] is Ellipsis) else None
        if item is None:
            return _UNCHECKED
        verdicts = [judge(v, item) for v in value]
        return _UNCHECKED if any(v is _UNCHECKED for v in verdicts) else all(verdicts)
    return _UNCHECKED


def describe(hint: Any) -> str:
    """A type hint in the words of a config file."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return "true or false"
    if hint in (int, float, str):
        return {int: "an integer", float: "a number", str: "a string"}[hint]
    if hint is type(None):
        return "null"
    if isinstance(hint, type) and issubclass(hint, os.PathLike):
        return "a path"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(a) for a in args))
    if origin in (list, tuple, Sequence):
        item = describe(args[0]).removeprefix("an ").removeprefix("a ") if args else ""
        return f"a list of {item}s" if args else "a list"
    return getattr(hint, "__name__", str(hint))


def check_learning_rates(config: DictConfig) -> None:
    """Every learning rate (optimizer.lr, and the model options tasks declare learning rates,
    a GAN's g_lr/d_lr) a finite number > 0."""
    from zoo.tasks import learning_rate_options

    for key in ("optimizer.lr", *(f"model.{option}" for option in learning_rate_options())):
        lr = OmegaConf.select(config, key)
        if lr is None:
            continue
        ok = isinstance(lr, (int, float)) and not isinstance(lr, bool)
        if not (ok and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"{key} must be > 0 and finite, got {lr!r}")


def check_scheduler(scheduler: dict[str, Any], optimizer: DictConfig) -> None:
    """Build the scheduler on a throwaway optimizer and step it a few times: torch rejects
    some options (ReduceLROnPlateau factor >= 1) only when built, others (T_max=0) only when
    stepped."""
    from zoo.tasks.base import SCHEDULER_KEYS, SCHEDULERS, config_class
    from zoo.tasks.configs import RUN_STEPS_KEYS

    try:
        cls = config_class(scheduler, SCHEDULERS, "scheduler")
        options = {k: v for k, v in scheduler.items() if k not in (*SCHEDULER_KEYS, "_target_")}
        options |= {k: 100 for k in RUN_STEPS_KEYS if k in options and options[k] is None}
        lr = OmegaConf.select(optimizer, "lr") or 1e-3
        probe = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
        built = cls(probe, **options)
        plateau = isinstance(built, torch.optim.lr_scheduler.ReduceLROnPlateau)
        for _ in range(3):
            probe.step()
            built.step(*([1.0] if plateau else []))
        if not all(math.isfinite(group["lr"]) for group in probe.param_groups):
            raise ValueError("it makes the learning rate infinite or NaN")
    except Exception as error:  # noqa: BLE001 - torch raises ValueError, ZeroDivisionError, ...
        detail = "an option it divides by is 0" if isinstance(error, ZeroDivisionError) else error
        raise ConfigError(f"invalid scheduler {scheduler.get('_target_')}: {detail}") from None


def locate(target: str) -> Any:
    """What a dotted `_target_` names (module, then attributes), or None; quietly, unlike
    Hydra's get_class, which logs every failure."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # noqa: BLE001, S112 - any import failure: not this split
            continue
        try:
            for name in parts[cut:]:
                found = getattr(found, name)
        except AttributeError:
            return None
        return found
    return None


# Optimizers and schedulers come from torch.optim, the zoo, or packages whose name says optim
# (torch_optimizer, timm.optim, bitsandbytes.optim, ...); other modules are not imported.
OPTIMIZER_MODULES = ("torch.optim", "zoo")


def may_import(target: str) -> bool:
    """Whether the module of an optimizer's or scheduler's `_target_` may be imported to check
    it: one already imported, torch.optim, the zoo's, or a package named for optimizers."""
    module = target.rpartition(".")[0]
    return (
        module in sys.modules
        or module.startswith(OPTIMIZER_MODULES)
        or any("optim" in part for part in module.split("."))
    )


def check_targets(config: DictConfig) -> None:
    """The model's `_target_` a network (torch.nn.Module) or task class; the optimizer's and
    scheduler's refused before any module outside the optimizer packages is imported."""
    from zoo.tasks.base import SCHEDULERS

    for section, base in (("optimizer", torch.optim.Optimizer), ("scheduler", SCHEDULERS)):
        node = config.get(section)
        target = node.get("_target_") if node else None
        if node is None or not node:
            continue
        if not isinstance(target, str) or not target:
            raise ConfigError(f"{section}._target_ must name a class, got {target!r}")
        if not may_import(target):
            raise ConfigError(
                f"{section}._target_={target} is not in torch.optim or an optimizer package; "
                "not importing it"
            )
        cls = locate(target)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            kind = (
                "an optimizer (torch.optim.Optimizer)" if section == "optimizer" else "a scheduler"
            )
            raise ConfigError(f"{section}._target_={target} is not {kind} class")
    target = config.model.get("_target_")
    cls = locate(str(target)) if target else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(
            f"model._target_={target} is not a network class (a torch.nn.Module) or a zoo task"
        )


PATH_KEYS = ("dirpath", "save_dir", "filename")


def check_paths(config: DictConfig) -> None:
    """Nothing a run writes leaves the places named: paths.* set, checkpoint and logger folders
    absolute (a relative one would land in whatever the working directory is), checkpoint file
    names inside their folder."""
    for key in ("root_dir", "log_dir", "data_dir", "output_dir"):
        value = OmegaConf.select(config, f"paths.{key}", throw_on_missing=False)
        if value is not None and not str(value).strip():
            raise ConfigError(f"paths.{key} is empty; give a folder (default: the checkout's)")
    nodes = {f"callbacks.{k}": v for k, v in (config.get("callbacks") or {}).items() if v}
    if config.get("logger"):
        nodes["logger"] = config.logger
    for where, node in nodes.items():
        for key in PATH_KEYS:
            value = node.get(key) if key in node else None
            if value is None:
                continue
            text = str(value)
            if key == "filename":
                if not text.strip() or Path(text).is_absolute() or ".." in Path(text).parts:
                    raise ConfigError(
                        f"{where}.filename={text!r} must be a file name inside the checkpoint "
                        "folder (no absolute path, no '..'); set dirpath for another folder"
                    )
            elif not text.strip() or not Path(text).is_absolute():
                raise ConfigError(
                    f"{where}.{key}={text!r} is not an absolute folder: it would resolve "
                    f"against the working directory; use ${{paths.output_dir}}/{text or 'name'} "
                    "or an absolute path"
                )


def check_trainer(trainer: DictConfig) -> None:
    """Trainer values Lightning or torch would only reject mid-training (or never)."""

    def number(key: str) -> Any:
        value = trainer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"trainer.{key} must be a number, got {value!r}")
        return value

    clip = number("gradient_clip_val")
    if clip is not None and not (math.isfinite(clip) and clip >= 0):
        raise ConfigError(f"trainer.gradient_clip_val must be a finite number >= 0, got {clip}")
    for key in ("accumulate_grad_batches", "check_val_every_n_epoch", "num_sanity_val_steps"):
        value = number(key)
        smallest = -1 if key == "num_sanity_val_steps" else 1
        if value is not None and (not isinstance(value, int) or value < smallest):
            raise ConfigError(f"trainer.{key} must be an integer >= {smallest}, got {value}")
    interval = number("val_check_interval")
    if interval is not None:
        whole = isinstance(interval, int)
        if not (interval >= 1 if whole else 0 < interval <= 1):
            raise ConfigError(
                "trainer.val_check_interval must be an integer >= 1 (batches) or a fraction "
                f"of an epoch in (0, 1], got {interval}"
            )
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = number(key)
        if value is not None and not (value >= 0 if isinstance(value, int) else 0 <= value <= 1):
            raise ConfigError(
                f"trainer.{key} must be an integer >= 0 or a fraction in [0, 1], got {value}"
            )
