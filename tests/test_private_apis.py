"""The private Lightning/torch APIs in zoo/lightning_private.py still exist and mean what the zoo
assumes: a Lightning or torch upgrade that breaks one fails here, by name."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter

from zoo.lightning_private import (
    is_compiled,
    logger_writes_this_step,
    served,
    tensorboard_file_writer,
)


class Recorder(L.LightningModule):
    """Records, per training step, whether Lightning's logger writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.writes: list[bool] = []

    def training_step(self, batch, batch_idx):
        self.writes.append(logger_writes_this_step(self.trainer))
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_logger_writes_every_n_steps(tmp_path):
    model = Recorder()
    trainer = L.Trainer(
        max_steps=9,
        log_every_n_steps=3,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(model, train_dataloaders=DataLoader(TensorDataset(torch.ones(18, 1)), batch_size=2))
    assert model.writes == [False, False, True] * 3


def test_tensorboard_file_writer_reopens_after_close(tmp_path):
    writer = SummaryWriter(tmp_path)
    assert tensorboard_file_writer(writer).get_logdir() == str(tmp_path)
    writer.close()
    assert tensorboard_file_writer(writer) is not None


def test_is_compiled_tracks_module_compile():
    module = nn.Linear(2, 2)
    assert not is_compiled(module)
    module.compile()
    assert is_compiled(module)


class Hooked(L.LightningDataModule):
    """Records its transfer hooks; after the transfer, adds 1 to the inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=2)

    test_dataloader = train_dataloader

    def on_before_batch_transfer(self, batch, dataloader_idx):
        self.calls.append("before")
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.calls.append("after")
        return [batch[0] + 1]


class ReadsTrainingSplit(L.LightningModule):
    """At the end of testing, serves itself a training batch outside Lightning's loops."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.outside = None

    def test_step(self, batch, batch_idx):
        return None

    def on_test_epoch_end(self):
        datamodule = self.trainer.datamodule
        datamodule.calls.clear()
        self.outside = served(self, next(iter(datamodule.train_dataloader())))


def test_served_sends_a_batch_through_the_datamodules_transfer_hooks(tmp_path):
    model, datamodule = ReadsTrainingSplit(), Hooked()
    L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False).test(
        model, datamodule=datamodule, verbose=False
    )
    assert datamodule.calls == ["before", "after"]
    assert torch.equal(model.outside[0], torch.full((2, 1), 2.0))
