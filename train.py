"""Train one architecture (`python train.py model=cnn`) or several (`-m model=mlp,cnn`)."""

import hydra
from omegaconf import DictConfig

from zoo.callbacks import NonFiniteLossError
from zoo.checkpoints import CheckpointError
from zoo.runs import refuse
from zoo.training import ConfigError, train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(config: DictConfig) -> None:
    try:
        train(config)
    except (ConfigError, CheckpointError, NonFiniteLossError) as error:
        refuse(error, config.paths.output_dir)  # one line; exit 2, or on to a sweep's next point


if __name__ == "__main__":
    main()
