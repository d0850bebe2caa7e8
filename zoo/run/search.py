"""Hyperparameter search (`python train.py -m hparams_search=<name>`): what a trial returns to
Hydra's Optuna sweeper, and which way is better for each metric."""

from __future__ import annotations

from omegaconf import DictConfig

from zoo.tasks import declared_metrics


def direction(metric: str) -> str:
    """Optuna's direction for a metric, as the tasks declare it (`Task.higher_is_better`):
    "maximize" when higher is better, else "minimize". A name no task declares takes the
    direction of a declared one in another stage (val/nmi as test/nmi), else "minimize"."""
    declared = declared_metrics()
    by_name = {name.rsplit("/", 1)[-1]: higher for name, higher in reversed(declared.items())}
    higher = declared.get(metric, by_name.get(metric.rsplit("/", 1)[-1], False))
    return "maximize" if higher else "minimize"


def objective(config: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value of the config's `optimized_metric` (a sweep's score), if it names one.

    A run that gives no such metric (a model/data pair skipped as not applicable) returns None,
    which the sweeper records as a failed trial (max_failure_rate decides whether the search goes
    on). Not NaN: the plugin's handling of a NaN score itself fails (optuna 2.10).
    """
    metric = config.get("optimized_metric")
    if metric is None or metric not in metrics:
        return None
    return float(metrics[metric])
