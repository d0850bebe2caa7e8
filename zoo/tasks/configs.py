"""Safe construction from plain configs (Hydra `_target_` form): the classes a config or a
checkpoint may name, networks built for the data's facts, and optimizer checks."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from torch import nn

from zoo.errors import CheckpointError

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3}
SCHEDULER_KEYS = ("interval", "monitor")  # Lightning's scheduler options, not the scheduler's
# Scheduler options that null sets to the run's optimizer steps (OneCycleLR's total_steps).
RUN_STEPS_KEYS = ("total_steps",)
SCHEDULERS = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
# The checkpoint `Task.load_from_checkpoint` is rebuilding a task from, while it does.
LOADING: ContextVar[str | None] = ContextVar("zoo_loading_checkpoint", default=None)


def nested_target(value: Any, where: str) -> str | None:
    """Where under `value` (a config's option) a `_target_` hides, or None."""
    if isinstance(value, Mapping):
        if "_target_" in value:
            return where
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    return next((found for k, v in items if (found := nested_target(v, f"{where}.{k}"))), None)


def imported(path: str) -> Any:
    """The object at dotted `path` in modules already imported, or None; never imports."""
    parts, found = path.split("."), None
    for end in range(1, len(parts) + 1):
        found = sys.modules.get(".".join(parts[:end])) or getattr(found, parts[end - 1], None)
        if found is None:
            return None
    return found


def config_class(config: dict[str, Any], base: type | tuple[type, ...], what: str) -> type:
    """The class a `_target_` config names, refused unless it is a `base`: a config read from a
    checkpoint must never call arbitrary code. Options may not name classes themselves (Hydra
    would call them), and while a checkpoint loads only classes already imported count."""
    target, loading = str(config.get("_target_")), LOADING.get()
    nested = next(
        (
            found
            for key, value in config.items()
            if key != "_target_" and (found := nested_target(value, f"{what}.{key}"))
        ),
        None,
    )
    problem = None
    if nested:
        problem = f"{nested} names a class (_target_); only {what} itself may"
    elif loading is not None and not isinstance(imported(target), type):
        problem = f"{what} {target!r} is not a class the zoo has imported (loading imports none)"
    else:
        try:
            cls = get_class(target)
        except Exception:  # noqa: BLE001 - hydra raises ImportError, ValueError, AttributeError
            problem = f"{what} {target!r} is not a class that can be imported"
        else:
            if not issubclass(cls, base):
                problem = f"{what} {target!r} is not a {getattr(base, '__name__', base)}"
    if problem is None:
        return cls
    if loading is not None:
        raise CheckpointError(f"refusing to load {loading}: {problem}")
    raise ValueError(problem)  # a config value, so ValueError like every other one


def build_net(config: Mapping[str, Any], what: str = "model", **data: Any) -> nn.Module:
    """The network a `_target_` config names, given those facts of the data (`input_shape`,
    `num_outputs`, ...) that its constructor takes. `what` is where the config sits in a run's
    config (`model`, `model.generator`): the network's own messages name its options there."""
    if not isinstance(config, Mapping) or "_target_" not in config:
        raise ValueError(f"{what} must be a network config with a _target_, got {config!r}")
    cls = config_class(dict(config), nn.Module, what)
    takes = inspect.signature(cls).parameters
    facts = {k: v for k, v in data.items() if k in takes}
    try:
        return instantiate(dict(config), **facts, _convert_="all")
    except (InstantiationException, ValueError, TypeError) as error:
        cause = (error.__cause__ or error) if isinstance(error, InstantiationException) else error
        if what == "model" or type(cause) not in (ValueError, TypeError):  # not ours: as is
            raise
        # The nets name their options `model.<option>`; nested here, they are `<what>.<option>`.
        message = re.sub(r"\bmodel\.", f"{what}.", str(cause))
        raise type(cause)(message) from None


def check_optimizer(optimizer: dict[str, Any]) -> None:
    """Fail now, with one clear line, on an optimizer config torch would reject later."""
    lr = optimizer.get("lr")
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"optimizer.lr must be > 0, got {lr!r}")
    config_class(optimizer, torch.optim.Optimizer, "optimizer")
    try:
        instantiate(optimizer, params=[nn.Parameter(torch.zeros(1))])
    except Exception as error:  # noqa: BLE001 - torch/hydra raise TypeError, ValueError, ...
        cause = error.__cause__ or error
        raise ValueError(f"invalid optimizer {optimizer.get('_target_')}: {cause}") from None
