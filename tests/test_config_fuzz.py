"""Fuzz every key in conf/ with values of the wrong type or range: each is refused in one line
before training, or trains; never a traceback. CI runs a seeded sample; ZOO_FUZZ_ALL=1 runs all
(docs/experiments.md has the last full pass)."""

from __future__ import annotations

import os
import random
import signal

import pytest
import yaml
from conftest import compose_config
from hydra.errors import HydraException

from zoo.errors import CheckpointError, ConfigError, DoesNotFitError
from zoo.registry import CONFIG_DIR, accepted_inputs, model_config
from zoo.run.callbacks import NonFiniteLossError
from zoo.run.training import train

BAD_VALUES = ["abc", "-1", "0", "1e30", "inf", "[1,2]", "true", "null", "0.5"]
SHORT = [
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "trainer.max_epochs=1",
]
SKIPPED_GROUPS = {"experiment", "logger", "recipe", "results"}  # they set other groups' keys
# Data that needs files a test has to write (their own tests do); model runs use embedded data.
FILE_DATA = {"mnist", "fashion_mnist", "cifar10"}
NO_GPU = {("trainer", "gpu"), ("trainer", "ddp")}  # no GPU here; DDP has its own tests


def data_for(model: str) -> str:
    accepts = accepted_inputs(model_config(model)) or ("image",)
    return next(
        data
        for kind, data in [("image", "digits"), ("tokens", "text"), ("tree", "listops")]
        if kind in accepts
    )


def leaves(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if key == "_target_":
            continue
        if isinstance(value, dict):
            keys += leaves(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def cases() -> list[tuple[str, ...]]:
    """(group choice overrides..., key=value) for every leaf key of every yaml and bad value."""
    found = []
    for path in sorted(CONFIG_DIR.glob("*/*.yaml")):
        group, choice = path.parent.name, path.stem
        if group in SKIPPED_GROUPS or choice in FILE_DATA or (group, choice) in NO_GPU:
            continue
        base = [f"{group}={choice}"] if group != "callbacks" else []
        if group == "model":
            base.append(f"data={data_for(choice)}")
        if "data=listops" in base:  # quick: no 100,000-example pool to generate
            base.append("data.distribution=easy")
        prefix = f"{group}." if group != "callbacks" else "callbacks."
        for key in leaves(yaml.safe_load(path.read_text()) or {}):
            found += [(*base, f"{prefix}{key}={value}") for value in BAD_VALUES]
    found += [("seed=" + value,) for value in BAD_VALUES]
    return found


ALL = cases()
CHOSEN = ALL if os.environ.get("ZOO_FUZZ_ALL") else random.Random(14).sample(ALL, 24)


@pytest.mark.slow
@pytest.mark.parametrize("overrides", CHOSEN, ids=" ".join)
def test_a_bad_value_is_one_line_or_trains(tmp_path, overrides):
    try:
        config = compose_config(tmp_path, [*overrides, *SHORT])
    except HydraException:
        return  # Hydra refused the override itself, in one line
    signal.alarm(LIMIT_SECONDS)  # a value that makes training run on and on is a failure too
    try:
        train(config)
    except (ConfigError, CheckpointError, DoesNotFitError, NonFiniteLossError) as error:
        assert "\n" not in str(error), error  # (a huge lr is legal; the NaN guard stops it)
    finally:
        signal.alarm(0)


def too_long(*_: object) -> None:
    raise TimeoutError(f"still training after {LIMIT_SECONDS} s (2 steps were asked for)")


LIMIT_SECONDS = 180
signal.signal(signal.SIGALRM, too_long)
