"""One check of a whole run config before anything is built: known top-level keys, every option
against the type its class declares (the constructors' type hints are the schema), and the few
values torch or Lightning would only reject mid-training."""

from __future__ import annotations

import inspect
import math
import os
import types
import typing
from collections.abc import Sequence
from typing import Any

import torch
from hydra.utils import get_class
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
    try:
        cls = get_class(str(target)) if target else None
    except Exception:  # noqa: BLE001 - an unknown class is reported where it is built
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

    try:
        cls = config_class(scheduler, SCHEDULERS, "scheduler")
        options = {k: v for k, v in scheduler.items() if k not in (*SCHEDULER_KEYS, "_target_")}
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
