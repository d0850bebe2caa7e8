"""TensorBoard's HPARAMS tab: one layout (columns) shared by every run of the zoo.

TensorBoard takes the tab's columns from the first run's layout it finds, so every run writes
the same full one: the options of every model, optimizer and scheduler yaml in conf/, the real
learning rate of each network, and the metrics every task declares (`Task.higher_is_better`).
A run fills in its own values.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from omegaconf import OmegaConf
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams.api_pb2 import DataType, HParamInfo, MetricInfo, MetricName
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.tensorboard.summary import hparams

from zoo.registry import CONFIG_DIR
from zoo.tasks import declared_metrics

# The run's own statistics (zoo.run.callbacks.RunStats), after every task's declared metrics.
RUN_METRICS = ("run/fit_seconds", "run/parameters", "run/samples_per_second", "run/epochs")
# Columns every run has (lr for one network; lr.<network> for a GAN's two).
COLUMNS: dict[str, Any] = {
    "model": "",
    "net": "",
    "task": "",
    "data": "",
    "optimizer": "",
    "lr": 0.0,
    "lr.generator": 0.0,
    "lr.discriminator": 0.0,
    "scheduler": "",
    "data.batch_size": 0,
    "max_epochs": 0,
    "seed": 0,
}
# Shown first: TensorBoard displays the five hparams marked `differs` (then by name) at start.
SHOWN_FIRST = ("model", "data", "optimizer", "lr", "scheduler")
GROUPS = ("model", "optimizer", "scheduler")  # conf/ groups whose options become columns
HIDDEN = ("._target_", "optimizer.lr", ".fid_cache_dir")  # shown otherwise, or not a setting


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and other values become strings."""
    if not isinstance(tree, dict):
        plain = isinstance(tree, (int, float, str, bool)) or tree is None
        return {prefix[:-1]: tree if plain else str(tree)}
    return {
        k: v for key, value in tree.items() for k, v in flatten(value, f"{prefix}{key}.").items()
    }


def settings(table: dict[str, Any]) -> dict[str, Any]:
    """`table` without the HIDDEN keys (`_target_`s, the optimizer yaml's lr, cache paths)."""
    return {k: v for k, v in table.items() if not k.endswith(HIDDEN)}


@cache
def registry_columns() -> dict[str, Any]:
    """Every option of every yaml in conf/model, conf/optimizer and conf/scheduler, with an
    example value (its type sets the column's type)."""
    columns: dict[str, Any] = {}
    for group in GROUPS:
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            options = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            for key, value in settings(flatten(options, f"{group}.")).items():
                if columns.get(key) is None:
                    columns[key] = value
    return columns


def metric_columns() -> tuple[str, ...]:
    """Every metric any task declares (so that sorting by one works across tasks), then the
    run's own statistics."""
    return (*declared_metrics(), *RUN_METRICS)


def data_type(value: Any) -> int:
    if isinstance(value, bool):
        return DataType.DATA_TYPE_BOOL
    if isinstance(value, (int, float)):
        return DataType.DATA_TYPE_FLOAT64
    return DataType.DATA_TYPE_STRING if isinstance(value, str) else DataType.DATA_TYPE_UNSET


def hparams_summaries(table: dict[str, Any], metrics: list[str]) -> list[Summary]:
    """The HPARAMS tab's summaries for one run: torch's session records for `table`, with the
    layout widened to every column and every metric of the zoo (and this run's own)."""
    table = {k: v for k, v in table.items() if v is not None}
    layout, start, end = hparams(table, dict.fromkeys(metrics, 0.0))
    data = HParamsPluginData.FromString(layout.value[0].metadata.plugin_data.content)
    columns = COLUMNS | registry_columns() | table
    listed = {info.name for info in data.experiment.hparam_infos}
    data.experiment.hparam_infos.extend(
        HParamInfo(name=key, type=data_type(example))
        for key, example in columns.items()
        if key not in listed
    )
    for info in data.experiment.hparam_infos:
        info.differs = info.name in SHOWN_FIRST
    every = metric_columns()
    own = [info.name.tag for info in data.experiment.metric_infos if info.name.tag not in every]
    data.experiment.ClearField("metric_infos")  # one order, whichever run TensorBoard reads
    data.experiment.metric_infos.extend(MetricInfo(name=MetricName(tag=t)) for t in every)
    data.experiment.metric_infos.extend(MetricInfo(name=MetricName(tag=t)) for t in own)
    layout.value[0].metadata.plugin_data.content = data.SerializeToString()
    return [layout, start, end]
