"""The Hydra resolvers conf/ uses, registered in this one place (`register`), before Hydra
composes a config: train's main and the tests' compose call it."""

from __future__ import annotations

from omegaconf import OmegaConf

from zoo.run.folders import RUN_ID, project_root, run_name
from zoo.run.search import direction


def register() -> None:
    """${run_id:} (one token per process, cached like ${now:}: a sweep's jobs, even in other
    processes, see the launcher's value), ${run_name:...}, ${project_root:} and
    ${direction:<metric>} (conf/hparams_search/)."""
    OmegaConf.register_new_resolver("run_id", lambda: RUN_ID, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("project_root", project_root, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("direction", direction, replace=True)
