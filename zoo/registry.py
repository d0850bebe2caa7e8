"""The configs in conf/ are the registry: list, build and load architectures from them.

A model yaml names either a network (`_target_: zoo.nets.ConvNet` and its options), which
trains under the task its data asks for (zoo.tasks.TASK_FOR_KIND), or a task of its own
(`_target_: zoo.tasks.Adversarial` and its options). Keys of a network's yaml that its task
takes (`compile`) go to the task; the rest go to the network.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from zoo.data.spec import DESCRIPTIONS, DataSpec
from zoo.errors import DoesNotFitError
from zoo.loading import read_checkpoint
from zoo.tasks import TASK_FOR_KIND, Task
from zoo.tasks.base import recorded_task

# Installed as a package, the configs ship inside it (zoo/conf, see setup.py); in the repo they
# live in the top-level conf/, which is also Hydra's config dir for train.py.
PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "conf"
CONFIG_DIR = (
    PACKAGED_CONFIG_DIR
    if PACKAGED_CONFIG_DIR.is_dir()
    else PACKAGED_CONFIG_DIR.parent.parent / "conf"
)


def list_models() -> list[str]:
    """Names of every architecture, one per conf/model/*.yaml."""
    return sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))


def model_config(name: str, **overrides: Any) -> DictConfig:
    """The model's config from conf/model/<name>.yaml with `overrides` merged in."""
    path = CONFIG_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return OmegaConf.merge(OmegaConf.load(path), overrides)


def accepted_inputs(config: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The kinds of input ("image", "sequence", ...) the yaml's network or task declares it
    takes (its class attribute `accepts`); None when it does not say."""
    accepts = getattr(get_class(config["_target_"]), "accepts", None)
    return None if accepts is None else tuple(accepts)


def models_for(inputs: str) -> list[str]:
    """The registered models that take this kind of input."""
    return [
        name
        for name in list_models()
        if inputs in (accepted_inputs(model_config(name)) or (inputs,))
    ]


def check_fits(config: Mapping[str, Any], spec: DataSpec, name: str | None = None) -> None:
    """One DoesNotFitError line when the model cannot take the data's kind of input."""
    accepts = accepted_inputs(config)
    if accepts is None or spec.inputs in accepts:
        return
    cls = config["_target_"].rsplit(".", 1)[-1]
    label = f"model={name} ({cls})" if name else cls
    others = ", ".join(models_for(spec.inputs)) or "none yet"
    raise DoesNotFitError(
        f"{label} takes {' or '.join(DESCRIPTIONS.get(a, a) for a in accepts)}; this data gives "
        f"{spec.describe()}; models that take {spec.inputs.removesuffix('s')}s: {others}"
    )


def build_model(
    config: Mapping[str, Any],
    spec: DataSpec,
    optimizer: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    name: str | None = None,
) -> Task:
    """The task for a model yaml (a plain dict or DictConfig) on data described by `spec`."""
    config = (
        OmegaConf.to_container(config, resolve=True)
        if OmegaConf.is_config(config)
        else dict(config)
    )
    check_fits(config, spec, name)
    target = get_class(config["_target_"])
    if not issubclass(target, Task) and spec.kind not in TASK_FOR_KIND:
        raise DoesNotFitError(f"no task trains a plain network on {spec.kind} data")
    task_class = target if issubclass(target, Task) else TASK_FOR_KIND[spec.kind]
    takes = inspect.signature(task_class).parameters
    options = {k: v for k, v in config.items() if k != "_target_"}
    if task_class is not target:  # a network's yaml: what the task does not take is the net's
        options = {k: v for k, v in options.items() if k in takes}
        options["net"] = {k: v for k, v in config.items() if k not in options}
    facts = {k: v for k, v in spec.arguments().items() if k in takes}
    return task_class(**facts, **options, optimizer=optimizer, scheduler=scheduler)


def create_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    kind: str = "classification",
    **overrides: Any,
) -> Task:
    """A LightningModule for architecture `name` on inputs of `input_shape` (e.g. (1, 28, 28))
    with `num_classes` outputs (values, for kind="regression"); `overrides` set yaml options."""
    spec = DataSpec(tuple(input_shape), num_classes, kind)
    return build_model(model_config(name, **overrides), spec, name=name)


def load(path: str | Path, **kwargs: Any) -> Task:
    """Restore any zoo checkpoint as the task class it records (one of zoo.tasks.TASKS, nothing
    imported by name), reading plain data only."""
    cls = recorded_task(read_checkpoint(path), path)
    return cls.load_from_checkpoint(path, map_location="cpu", **kwargs)
