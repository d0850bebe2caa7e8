"""The configs in conf/ are the registry: list and build architectures without the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning import LightningModule
from omegaconf import OmegaConf

# Installed as a package, the configs ship inside it (zoo/conf, see setup.py); in the repo they
# live in the top-level conf/, which is also Hydra's config dir for train.py.
PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "conf"
CONFIG_DIR = PACKAGED_CONFIG_DIR if PACKAGED_CONFIG_DIR.is_dir() else PACKAGED_CONFIG_DIR.parent.parent / "conf"


def list_models() -> list[str]:
    """Names of every architecture, one per conf/model/*.yaml."""
    return sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))


def model_config(name: str, **overrides: Any):
    """The model's config from conf/model/<name>.yaml with `overrides` merged in."""
    path = CONFIG_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return OmegaConf.merge(OmegaConf.load(path), overrides)


def create_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, **overrides: Any
) -> LightningModule:
    """Build architecture `name` for inputs of `input_shape` (e.g. (1, 28, 28))."""
    config = model_config(name, **overrides)
    return instantiate(config, input_shape=tuple(input_shape), num_classes=num_classes, _convert_="all", _recursive_=False
    )
