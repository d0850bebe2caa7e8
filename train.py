"""Train one architecture (`python train.py model=cnn`) or several (`-m model=mlp,cnn`)."""

import sys

import hydra
from omegaconf import DictConfig

from zoo.callbacks import NonFiniteLossError
from zoo.checkpoints import CheckpointError
from zoo.search import objective
from zoo.training import ConfigError, train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(config: DictConfig) -> float | None:
    """Train; in a search (hparams_search=...), return the score the sweeper optimises."""
    try:
        return objective(config, train(config))
    except (ConfigError, CheckpointError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
