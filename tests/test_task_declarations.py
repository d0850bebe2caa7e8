"""Tasks describe themselves: a new kind of learning, defined here and registered, trains through
`zoo train`'s path, and compare, the HPARAMS layout and the search direction use the metric it
declares with no edit under zoo/; `direction` is right for every metric every task declares."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import hparams_tab
from omegaconf import OmegaConf, open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch import Tensor, nn
from torchmetrics import R2Score
from torchmetrics.classification import MulticlassAccuracy

import zoo
from zoo.cli.compare import Run, find_runs, grouped, report
from zoo.errors import CheckpointError
from zoo.run.hparams import hparams_summaries
from zoo.run.search import direction
from zoo.run.training import build_run, train
from zoo.tasks import TASKS, Supervised, Task, register
from zoo.tasks.base import each_stage

REPO = Path(__file__).resolve().parent.parent


class HitRate(Task):
    """A toy kind of learning: a classifier scored by a metric of its own, `hit_rate`, which
    grows better up (the zoo knows nothing of it but what this class declares)."""

    higher_is_better = each_stage(loss=False, hit_rate=bool(MulticlassAccuracy.higher_is_better))
    val_metric = ("val/hit_rate",)
    test_metric = ("test/hit_rate",)
    predicts = True

    def __init__(
        self,
        net: dict,
        input_shape: tuple[int, ...],
        num_outputs: int,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(input_shape, optimizer, scheduler, compile)
        self.save_hyperparameters()
        self.net = self.network(net, input_shape=self.input_shape, num_outputs=num_outputs)
        self.hits = nn.ModuleDict(
            {stage: MulticlassAccuracy(num_outputs, average="micro") for stage in ("val", "test")}
        )

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log_train_step({"loss": loss}, len(y))
        return loss

    def evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        getattr(self, f"{stage}_means").add({"loss": F.cross_entropy(logits, y)}, len(y))
        self.hits[stage].update(logits.argmax(-1), y)

    def log_hits(self, stage: str) -> None:
        self.log_epoch(stage, {f"{stage}/hit_rate": self.hits[stage].compute()})
        self.hits[stage].reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_hits("val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log_hits("test")


TARGET = f"{HitRate.__module__}.{HitRate.__qualname__}"


@pytest.fixture
def registered():
    """HitRate registered as a user registers a task (`@zoo.tasks.register`), for one test."""
    register(HitRate)
    yield HitRate
    TASKS.pop(TARGET)


def test_an_unregistered_task_is_unknown_to_the_zoo():
    assert TARGET not in TASKS
    assert direction("val/hit_rate") == "minimize"  # nothing declares it: the default
    with pytest.raises(TypeError, match="only a subclass of zoo.tasks.Task"):
        register(nn.Linear)


@pytest.mark.slow
def test_a_new_task_trains_through_zoo_train_and_the_zoo_uses_its_declared_metric(
    make_config, tmp_path, registered
):
    config = make_config("model=mlp", "data=digits", "trainer.max_epochs=3", "threads=1")
    with open_dict(config):
        config.model = OmegaConf.create(
            {"_target_": TARGET, "net": {"_target_": "zoo.nets.FeedForward", "hidden_sizes": [32]}}
        )
    metrics = train(config)
    assert metrics["test/hit_rate"] > 0.5  # chance is 0.1: it learned

    # compare: the run's task from its HPARAMS row, and that task's headline and direction
    (run,), skipped = find_runs([tmp_path])
    assert not skipped and run.task is HitRate and run.hparams["task"] == "HitRate"
    assert (run.val_metric, run.test_metric, run.higher_is_better) == (
        "val/hit_rate",
        "test/hit_rate",
        True,
    )
    series = [value for _, value in run.scalars["val/hit_rate"]]
    assert len(series) == 3 and run.best() == max(series)
    assert "best = best val/hit_rate, test = test/hit_rate" in report([run], tmp_path, ("run",), 80)
    worse = Run(tmp_path / "b", "mlp", "digits", {"val/hit_rate": [(0, 0.3), (1, 0.2)]})
    better = Run(tmp_path / "a", "mlp", "digits", {"val/hit_rate": [(0, 0.6), (1, 0.4)]})
    for other in (worse, better):
        other.hparams = {"task": "HitRate"}
    assert [r.best() for r in next(iter(grouped([worse, better]).values()))] == [0.6, 0.3]

    # the HPARAMS layout: every run's columns hold the declared metric, this run's or not
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    layout = hparams_tab(events)["_hparams_/experiment"].experiment
    assert {"val/hit_rate", "test/hit_rate"} <= {m.name.tag for m in layout.metric_infos}
    other_run = HParamsPluginData.FromString(
        hparams_summaries({"model": "cnn"}, [])[0].value[0].metadata.plugin_data.content
    )
    assert "val/hit_rate" in {m.name.tag for m in other_run.experiment.metric_infos}

    # the search direction, and its checkpoints load as the task they record
    assert direction("val/hit_rate") == direction("test/hit_rate") == "maximize"
    assert type(zoo.load(next((tmp_path / "checkpoints").glob("best*.ckpt")))) is HitRate


CASES = [(name, cls) for cls in TASKS.values() for name in cls.higher_is_better]


@pytest.mark.parametrize(("metric", "cls"), CASES, ids=[f"{c.__name__}:{m}" for m, c in CASES])
def test_direction_is_right_for_every_metric_every_task_declares(metric, cls):
    expected = "maximize" if cls.higher_is_better[metric] else "minimize"
    assert direction(metric) == expected


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("val/r2", "maximize"),  # was minimised (a live bug)
        ("test/probe_acc", "maximize"),  # was minimised (a live bug)
        ("test/nmi", "maximize"),
        ("val/acc", "maximize"),
        ("val/mse", "minimize"),
        ("val/fid", "minimize"),
        ("val/bpc", "minimize"),
        ("val/kl", "minimize"),
    ],
)
def test_direction_of_the_metrics_the_zoo_logs(metric, expected):
    assert direction(metric) == expected


def test_torchmetrics_objects_say_which_way_is_better():
    assert Supervised.higher_is_better["val/r2"] is bool(R2Score.higher_is_better) is True
    assert Supervised.higher_is_better["val/acc"] is True
    assert all(cls.monitor in cls.higher_is_better for cls in TASKS.values())


def test_the_rest_of_the_zoo_lists_no_metric_names_and_branches_on_no_task_class():
    """Outside zoo/tasks and zoo/metrics no code names a val/ or test/ metric or asks a task's
    class (isinstance, a class name): the declarations say it."""
    names = "|".join(cls.__name__ for cls in TASKS.values())
    patterns = [
        re.compile(r"[\"'](val|test)/\w+[\"']"),
        re.compile(rf"isinstance\([^)]*\b({names})\b"),
        re.compile(rf"__name__ == [\"']({names})[\"']"),
    ]
    found = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for path in (REPO / "zoo").rglob("*.py")
        if path.parent.name not in ("tasks", "metrics")
        for pattern in patterns
        for match in pattern.finditer(path.read_text())
    ]
    assert not found


# --- every network of every task is configured the same way (`_target_` + options) -----------
@pytest.mark.parametrize(
    ("name", "overrides", "widths"),
    [
        ("gan", ["model.generator.widths=[24]", "model.discriminator.widths=[12,6]"], (24, 12)),
        ("ae", ["model.encoder.widths=[20]", "model.decoder.widths=[14,7]"], (20, 14)),
    ],
)
def test_a_networks_options_are_ordinary_overrides_and_checkpoints_rebuild_them(
    make_config, tmp_path, name, overrides, widths
):
    _, model, _ = build_run(make_config(f"model={name}", "data=digits", *overrides))
    first, second = model.networks().values() if name == "gan" else model.net.children()
    assert first_width(first) == widths[0] and first_width(second) == widths[1]
    path = save(model, tmp_path / "task.ckpt")
    loaded = zoo.load(path)
    assert torch.equal(
        torch.cat([p.flatten() for p in loaded.parameters()]),
        torch.cat([p.flatten() for p in model.parameters()]),
    )


@pytest.mark.parametrize("network", ["generator", "discriminator"])
def test_a_checkpoints_network_configs_may_name_only_imported_module_classes(network, tmp_path):
    path = save(zoo.create_model("gan", (1, 8, 8), 10), tmp_path / "gan.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"][network]["_target_"] = "os.system"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=rf"model.{network} 'os.system' is not a class"):
        zoo.load(path)


def first_width(net: nn.Module) -> int:
    """The output width of a network's first linear layer."""
    return next(m.out_features for m in net.modules() if isinstance(m, nn.Linear))


def save(model: Task, path: Path) -> Path:
    trainer = L.Trainer(max_epochs=0, logger=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path
