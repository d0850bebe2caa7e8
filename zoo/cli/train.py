"""`zoo train` (and `python train.py`): train one architecture (`model=cnn`) or several
(`-m model=mlp,cnn`), with any Hydra override."""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from zoo.errors import CheckpointError, ConfigError, first_line
from zoo.registry import CONFIG_DIR
from zoo.run.callbacks import NonFiniteLossError
from zoo.run.checkpoints import train_program
from zoo.run.folders import holds_record, refuse
from zoo.run.resolvers import register
from zoo.run.search import objective
from zoo.run.training import train


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def run(config: DictConfig) -> float | None:
    """Train; in a search (hparams_search=...), return the score the sweeper optimises."""
    try:
        return objective(config, train(config))
    except (ConfigError, CheckpointError) as error:  # one line; exit 2 or the sweep's next point
        refuse(error, config.paths.output_dir)
    except NonFiniteLossError as error:  # the same, keeping the folder: its logs show the NaN
        refuse(error, config.paths.output_dir, keep=True)
    except Exception as error:  # anything else: one line too, and a sweep goes on
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        where = config.paths.output_dir
        reason = f"{type(error).__name__}: {first_line(str(error))}"
        unexpected = RuntimeError(f"{reason} (HYDRA_FULL_ERROR=1 shows the traceback)")
        refuse(unexpected, where, keep=holds_record(Path(where)))
    return None  # a refused point of a search: Optuna's sweeper records a failed trial


def main() -> None:
    """Hydra reads the overrides from sys.argv; `--help` names the form the user ran."""
    register()
    OmegaConf.register_new_resolver("program", lambda: " ".join(train_program()), replace=True)
    run()
