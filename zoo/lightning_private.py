"""Every private Lightning / torch API the zoo uses, in one place (tests/test_private_apis.py
fails loudly if an upgrade removes one). Each has no public equivalent:

- whether Lightning's logger writes on this step (`should_update_logs`): the zoo calls
  `self.log` only then, since one call costs as much as a small training step;
- the TensorBoard writer's file writer: the HPARAMS tab must go into the run's own event file
  (`SummaryWriter.add_hparams` writes a separate run), also after Lightning closed the writer;
- whether `nn.Module.compile()` already ran on a module (it keeps no public flag);
- a batch through the transfer hooks (the module's or its datamodule's, whichever Lightning
  picks), as Lightning's loops serve it, for a task that reads a split outside them.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import nn


def logger_writes_this_step(trainer: L.Trainer) -> bool:
    """Lightning's own test of whether the logger writes the current training step."""
    return trainer._logger_connector.should_update_logs


def tensorboard_file_writer(experiment: Any) -> Any:
    """The open file writer of a torch SummaryWriter (reopened if Lightning closed it)."""
    return experiment._get_file_writer()


def is_compiled(module: nn.Module) -> bool:
    """Whether `module.compile()` (in place) has run."""
    return module._compiled_call_impl is not None


def served(module: L.LightningModule, batch: Any) -> Any:
    """`batch` on the module's device as Lightning's loops serve it: through its (or its
    datamodule's) on_before_batch_transfer, transfer_batch_to_device, on_after_batch_transfer."""
    return module._apply_batch_transfer_handler(module._on_before_batch_transfer(batch))
