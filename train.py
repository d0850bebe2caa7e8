"""Train one architecture (`python train.py model=cnn`) or several (`-m model=mlp,cnn`)."""

import hydra
from omegaconf import DictConfig

from zoo.callbacks import NonFiniteLossError
from zoo.checkpoints import CheckpointError
from zoo.runs import refuse
from zoo.search import objective
from zoo.training import ConfigError, train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(config: DictConfig) -> float | None:
    """Train; in a search (hparams_search=...), return the score the sweeper optimises."""
    try:
        return objective(config, train(config))
    except (ConfigError, CheckpointError) as error:  # one line; exit 2 or the sweep's next point
        refuse(error, config.paths.output_dir)
    except NonFiniteLossError as error:  # the same, keeping the folder: its logs show the NaN
        refuse(error, config.paths.output_dir, keep=True)
    return None  # a refused point of a search: Optuna's sweeper records a failed trial


if __name__ == "__main__":
    main()
