"""Shared fixtures: compose the real Hydra config into a temporary output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from zoo.registry import CONFIG_DIR
from zoo.run.resolvers import register

register()  # conf/'s resolvers, as `zoo train` registers them

REPO = Path(__file__).resolve().parent.parent


def compose_config(output_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """The config `python train.py <overrides>` would see, writing into `output_dir`."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        config = compose(
            "config",
            overrides=[*overrides, "~callbacks.progress_bar", "+trainer.enable_progress_bar=false"],
        )
    with open_dict(config):
        config.paths.output_dir = str(output_dir)
        config.paths.data_dir = str(output_dir / "data")
    return config


@pytest.fixture
def make_config(tmp_path: Path):
    """Factory: make_config("model=mlp", "trainer.max_epochs=1") -> composed DictConfig."""
    return lambda *overrides: compose_config(tmp_path, list(overrides))


def hparams_tab(events: Any) -> dict[str, Any]:
    """The HPARAMS tab's records in a run's events (an EventAccumulator), by tag."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    return {
        tag: plugin_data_pb2.HParamsPluginData.FromString(content)
        for tag, content in events.PluginTagToContent("hparams").items()
    }


def hparams_row(events: Any) -> Any:
    """The run's own values in the HPARAMS tab (name -> protobuf Value)."""
    return hparams_tab(events)["_hparams_/session_start_info"].session_start_info.hparams


def checkout_entries() -> dict[str, float]:
    """The checkout's top-level entries and those of its output folders, with their mtimes."""
    entries = {}
    for folder in (REPO, REPO / "logs", REPO / "data", REPO / "outputs", REPO / "multirun"):
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name not in (".pytest_cache", "__pycache__", ".git", ".ruff_cache"):
                    entries[str(entry)] = entry.stat().st_mtime
    return entries


@pytest.fixture(autouse=True)
def writes_nothing_into_the_checkout():
    """Tests write only under tmp_path: fail one that leaves files in the checkout."""
    before = checkout_entries()
    yield
    after = checkout_entries()
    changed = sorted(p for p, mtime in after.items() if before.get(p) != mtime)
    assert not changed, f"the test wrote into the checkout: {', '.join(changed)}"
