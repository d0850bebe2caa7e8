"""Nothing lost: resume rules by key, checkpoint writes that fail cleanly, one process per run
folder, and exact resume (weights and test metrics to the bit) after any interruption."""

from __future__ import annotations

import errno
import pickle

import pytest
import torch

from zoo.errors import CheckpointWriteError
from zoo.run.checkpoints import AtomicCheckpointIO, resumable, resume_conflict


@pytest.mark.parametrize(
    "key",
    [
        "optimizer.lr",
        "trainer.max_epochs",
        "trainer.limit_train_batches",
        "callbacks.last_checkpoint.every_n_seconds",
        "callbacks",
        "hydra.run.dir",
        "logger.name",
        "threads",
        "ckpt_path",
    ],
)
def test_resumable_keys_match_whole_keys_and_groups(key):
    assert resumable(key)


@pytest.mark.parametrize(
    "key",
    [
        "optimizer.lr_decay",  # starts with optimizer.lr, but another option
        "optimizer.lrs",
        "trainer.max_epochs_extra",
        "trainer.limit_anything",
        "threads_per_worker",
        "ckpt_path_other",
        "model.g_lr_scale",
        "callbacksx.y",
        "optimizer",
        "data.batch_size",
    ],
)
def test_keys_that_merely_start_like_a_resumable_one_are_not_resumable(key):
    assert not resumable(key)
    assert resume_conflict([f"{key}=1"], [f"{key}=2"]) == f"{key}=1 there, {key}=2 here"


def test_a_resume_may_change_the_resumable_keys_only():
    before = ["model=mlp", "optimizer.lr=0.1", "trainer.max_epochs=1"]
    later = ["model=mlp", "optimizer.lr=0.01", "trainer.max_epochs=3"]
    assert resume_conflict(before, later) is None
    assert resume_conflict(before, ["model=cnn", "optimizer.lr=0.1"]) == (
        "model=mlp there, model=cnn here"
    )


def unexpected_pos(obj, file, *args, **kwargs):
    file.write(b"x" * 1000)  # some bytes reach the disk first
    raise RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 64 vs 0")


def no_space(obj, file, *args, **kwargs):
    file.write(b"x" * 1000)
    raise OSError(errno.ENOSPC, "No space left on device")


def cannot_pickle(obj, file, *args, **kwargs):
    file.write(b"x" * 1000)
    raise pickle.PicklingError("Can't pickle <function <lambda>>")


def quota(obj, file, *args, **kwargs):
    raise OSError(errno.EDQUOT, "Disk quota exceeded")


@pytest.mark.parametrize("failure", [unexpected_pos, no_space, cannot_pickle, quota])
def test_any_failed_write_keeps_the_previous_checkpoint_and_says_so_in_one_line(
    tmp_path, monkeypatch, failure
):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", failure)
    with pytest.raises(CheckpointWriteError) as error:
        io.save_checkpoint({"step": torch.tensor(2)}, path)
    (line,) = str(error.value).splitlines()
    assert str(path) in line and "free on" in line
    assert path.read_bytes() == before  # the previous checkpoint, intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no partial file


def test_ctrl_c_during_a_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def interrupted(obj, file, *args, **kwargs):
        file.write(b"x" * 1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({}, tmp_path / "last.ckpt")
    assert not list(tmp_path.iterdir())
