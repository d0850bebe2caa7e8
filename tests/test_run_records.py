"""What a run records beside its metrics, with Lightning's own features: the task's graph
(TensorBoardLogger's log_graph) and the run's statistics (RunStats, a Timer)."""

from __future__ import annotations

import glob
import warnings

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo.run.callbacks import RunStats
from zoo.run.training import build_run, train


def graph_events(folder) -> int:
    return sum(
        event.HasField("graph_def")
        for path in glob.glob(f"{folder}/events.out.tfevents.*")
        for event in EventFileLoader(path).Load()
    )


@pytest.mark.slow
def test_a_run_logs_one_graph_and_its_statistics(make_config, tmp_path):
    train(make_config("model=mlp", "trainer.max_epochs=2", "+trainer.limit_train_batches=3"))
    assert graph_events(tmp_path) == 1  # traced at fit, not again at test
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    stats = {tag: events.Scalars(f"run/{tag}")[-1].value for tag in ("epochs", "parameters")}
    assert stats == {"epochs": 2, "parameters": 64 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10}
    seconds = events.Scalars("run/fit_seconds")[-1].value
    rate = events.Scalars("run/samples_per_second")[-1].value
    assert seconds > 0 and rate * seconds == pytest.approx(2 * 3 * 64)  # batch 64


@pytest.mark.parametrize("overrides", [["model=gan"], ["model=lstm", "data=listops"]])
def test_a_task_with_no_example_input_skips_the_graph_without_a_warning(make_config, overrides):
    _, model, trainer = build_run(make_config(*overrides))
    assert model.example_input_array is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.logger.log_graph(model)  # Lightning calls it at fit start
    assert not caught


class Line(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_run_stats_count_samples_and_time_across_a_resume(tmp_path):
    """A resumed run's statistics cover all of its training: samples and seconds both."""
    loader = DataLoader(TensorDataset(torch.ones(10, 1)), batch_size=4)  # batches 4, 4, 2
    options = {"default_root_dir": tmp_path, "logger": False, "enable_progress_bar": False}
    first = RunStats()
    L.Trainer(max_epochs=1, callbacks=[first], **options).fit(Line(), loader)
    assert first.samples == 10 and first.time_elapsed() > 0
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.ckpt")
    second = RunStats()
    L.Trainer(max_epochs=3, callbacks=[second], **options).fit(Line(), loader, ckpt_path=checkpoint)
    assert second.samples == 30
    assert second.time_elapsed() > first.time_elapsed()
