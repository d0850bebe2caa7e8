"""Nothing lost: resume rules by key, checkpoint writes that fail cleanly, one process per run
folder, and exact resume (weights and test metrics to the bit) after any interruption."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import signal as signal_
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import REPO, compose_config
from ddp_group import data_for

from zoo.errors import CheckpointWriteError, ConfigError
from zoo.registry import list_models, model_config
from zoo.run.checkpoints import (
    AtomicCheckpointIO,
    one_process_per_folder,
    resumable,
    resume_conflict,
)
from zoo.run.training import train


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


# Exact resume: every model yaml, a tiny deterministic run of 2 epochs x 6 batches, interrupted
# after batch 9 (mid second epoch), resumed, against its uninterrupted twin.
STEPS, INTERRUPT_BATCH = 6, 9
TINY = [
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "trainer.max_epochs=2",
    f"+trainer.limit_train_batches={STEPS}",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "callbacks.last_checkpoint.every_n_seconds=null",
    "logger.log_graph=false",
    "threads=1",
]


class KeepCheckpointsAt(L.Callback):
    """A copy of the checkpoint folder as a SIGKILL right after step `step` would leave it."""

    def __init__(self, step: int, to: str) -> None:
        self.step, self.to = step, Path(to)

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero and not self.to.exists():
            shutil.copytree(Path(trainer.default_root_dir) / "checkpoints", self.to)


class Preempted(BaseException):
    """SLURM ending the job after its pre-emption signal (nothing in the run catches it)."""


class SignalAt(L.Callback):
    """Send this process `signal` at the end of training step `step` (once)."""

    def __init__(self, step: int, signal: str) -> None:
        self.step, self.signal, self.sent = step, getattr(signal_, signal), False

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signal)
            if self.signal == signal_.SIGUSR1:  # Lightning saved its hpc checkpoint; SLURM kills
                raise Preempted


def interrupt_step(model: str) -> int:
    """The global step after batch INTERRUPT_BATCH: a GAN steps two optimizers per batch."""
    return INTERRUPT_BATCH * (2 if "fid_cache_dir" in model_config(model) else 1)


def tiny_run(model: str, folder: Path) -> list[str]:
    extra = [f"callbacks.last_checkpoint.every_n_train_steps={interrupt_step(model)}"]
    if "fid_cache_dir" in model_config(model):
        extra += ["model.fid_classifier_epochs=1", f"model.fid_cache_dir={folder.parent / 'fid'}"]
    data = [
        o.replace("steps_per_epoch=4", f"steps_per_epoch={STEPS}").replace("=256", "=512")
        for o in data_for(model)
    ]
    return [f"model={model}", *data, *TINY, *extra]


def final_state(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """model -> (run overrides, folder, metrics, final weights) of the uninterrupted run, with
    a copy of its checkpoints as a SIGKILL after batch INTERRUPT_BATCH leaves them."""
    done = {}

    def twin(model: str, extra: tuple[str, ...] = ()):
        if (model, extra) not in done:
            folder = tmp_path_factory.mktemp(model) / "uninterrupted"
            run = [*tiny_run(model, folder), *extra]
            keep = [
                f"+callbacks.keep._target_={__name__}.KeepCheckpointsAt",
                f"+callbacks.keep.step={interrupt_step(model)}",
                f"+callbacks.keep.to={folder.parent / 'killed'}",
            ]
            torch.manual_seed(0)  # nothing before the run's own seeding may matter
            metrics = train(compose_config(folder, [*run, *keep]))
            done[model, extra] = (run, folder, metrics, final_state(folder))
        return done[model, extra]

    return twin


KINDS = ["sigkill", "ctrl-c", "sigterm", "slurm-sigusr1"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("model", list_models())
def test_interrupted_run_resumes_to_the_same_bits(twins, tmp_path, monkeypatch, model, kind):
    interrupt_and_resume(twins(model), tmp_path, monkeypatch, model, kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sigkill", "ctrl-c"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_the_dataloader_path_resumes_to_the_same_bits(twins, tmp_path, monkeypatch, model, kind):
    """Data above memory_limit_mb goes through a torch DataLoader (ResumableDataLoader)."""
    twin = twins(model, ("data.loader=dataloader",))
    interrupt_and_resume(twin, tmp_path, monkeypatch, model, kind)


def interrupt_and_resume(twin, tmp_path, monkeypatch, model: str, kind: str) -> None:
    """Interrupt `model`'s run after batch INTERRUPT_BATCH in the way `kind` says, resume it,
    and compare with its uninterrupted `twin`."""
    run, uninterrupted, metrics, weights = twin
    folder = tmp_path / "run"
    if kind == "sigkill":  # the run's folder as the kill left it: its checkpoints of then
        folder = uninterrupted
        shutil.rmtree(folder / "checkpoints")
        shutil.copytree(uninterrupted.parent / "killed", folder / "checkpoints")
        killed = torch.load(folder / "checkpoints" / "last.ckpt")
        assert killed["global_step"] == interrupt_step(model)
        resume = ["ckpt_path=last"]
    else:
        name = {"ctrl-c": "SIGINT", "sigterm": "SIGTERM", "slurm-sigusr1": "SIGUSR1"}[kind]
        signal_at = [
            f"+callbacks.stop._target_={__name__}.SignalAt",
            f"+callbacks.stop.step={interrupt_step(model)}",
            f"+callbacks.stop.signal={name}",
        ]
        resume = ["ckpt_path=last"]
        if kind == "slurm-sigusr1":
            scontrol = tmp_path / "bin" / "scontrol"  # SLURM's requeue, a stand-in
            scontrol.parent.mkdir()
            scontrol.write_text("#!/bin/sh\nexit 0\n")
            scontrol.chmod(0o755)
            monkeypatch.setenv("PATH", f"{scontrol.parent}:{os.environ['PATH']}")
            for key, value in SLURM.items():
                monkeypatch.setenv(key, value)
            resume = []  # the requeued job resumes from Lightning's hpc checkpoint by itself
        with pytest.raises((SystemExit, Preempted)) as stopped:
            train(compose_config(folder, [*run, *signal_at]))
        if kind == "slurm-sigusr1":
            (hpc,) = folder.glob("hpc_ckpt_*.ckpt")
            assert torch.load(hpc)["global_step"] == interrupt_step(model)
        else:
            assert stopped.value.code == 128 + getattr(signal_, name)
            last = torch.load(folder / "checkpoints" / "last.ckpt")
            assert last["global_step"] == interrupt_step(model)
    torch.manual_seed(1234)  # another process, other random states before the resume
    resumed = train(compose_config(folder, [*run, *resume]))
    assert resumed == metrics  # every val/ and test/ metric, to the bit
    after = final_state(folder)
    assert after.keys() == weights.keys()
    different = [k for k in weights if not torch.equal(after[k], weights[k])]
    assert not different, f"{model} after {kind}: {different} differ"


SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "zoo",
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "127.0.0.1",
}


HOLD_LOCK = """
import sys
from pathlib import Path
from zoo.run.checkpoints import one_process_per_folder
with one_process_per_folder(Path(sys.argv[1])):
    print("holding", flush=True)
    sys.stdin.readline()  # until its stdin closes
"""


def holder(folder: Path) -> subprocess.Popen:
    """Another process training in `folder` (holding its lock)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "holding"
    return process


def test_a_second_process_on_a_run_folder_stops_with_one_line(tmp_path):
    run = ["model=mlp", "trainer.max_epochs=1", "+trainer.limit_train_batches=2"]
    other = holder(tmp_path)
    try:
        before = sorted(tmp_path.rglob("*"))
        with pytest.raises(ConfigError) as error:
            train(compose_config(tmp_path, run))
        (line,) = str(error.value).splitlines()
        assert f"another process (pid {other.pid}) is training in {tmp_path}" in line
        assert sorted(tmp_path.rglob("*")) == before  # it wrote nothing there
    finally:
        other.kill()
        other.wait()
    train(compose_config(tmp_path, run))  # the killed process holds the lock no longer
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("end", ["sigkill", "sigterm", "exit"])
def test_a_process_that_ended_in_any_way_holds_no_lock(tmp_path, end):
    other = holder(tmp_path)
    if end == "exit":
        other.stdin.close()  # it ends normally
    else:
        other.send_signal(signal_.SIGKILL if end == "sigkill" else signal_.SIGTERM)
    other.wait()
    assert (tmp_path / ".lock").read_text().strip() == str(other.pid)  # a stale file is left
    with one_process_per_folder(tmp_path):
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


STALE_CASES = {
    "best stops improving": ["callbacks.model_checkpoint.mode=max"],  # val/loss falls: no new best
    "ends mid-epoch (max_steps)": ["trainer.max_steps=9"],
    "write at the epoch's last step": ["callbacks.last_checkpoint.every_n_train_steps=6"],
    "no validation": ["+trainer.limit_val_batches=0"],
}


@pytest.mark.parametrize("case", STALE_CASES)
def test_last_checkpoint_holds_the_last_completed_state(tmp_path, case):
    """A resume from last.ckpt of a finished run has nothing left to do: no epoch re-run."""
    run = ["model=mlp", "model.hidden_sizes=[16]", "trainer.max_epochs=3", "threads=1"]
    run += ["+trainer.limit_train_batches=6", *STALE_CASES[case]]
    if "+trainer.limit_val_batches=0" not in run:
        run.append("+trainer.limit_val_batches=2")
    train(compose_config(tmp_path, run))
    last = tmp_path / "checkpoints" / "last.ckpt"
    done = torch.load(last)
    assert done["global_step"] == (9 if "max_steps" in case else 18)
    train(compose_config(tmp_path, [*run, "ckpt_path=last"]))
    again = torch.load(last)
    assert again["global_step"] == done["global_step"]  # nothing trained twice
    assert all(torch.equal(again["state_dict"][k], v) for k, v in done["state_dict"].items())


def test_resume_after_ctrl_c_then_the_end_leaves_last_checkpoint_at_the_end(tmp_path):
    run = ["model=mlp", "model.hidden_sizes=[16]", "trainer.max_epochs=3", "threads=1"]
    run += ["+trainer.limit_train_batches=6", "+trainer.limit_val_batches=2"]
    stop = [f"+callbacks.stop._target_={__name__}.SignalAt", "+callbacks.stop.step=4"]
    with pytest.raises(SystemExit):
        train(compose_config(tmp_path, [*run, *stop, "+callbacks.stop.signal=SIGINT"]))
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 4
    train(compose_config(tmp_path, [*run, "ckpt_path=last"]))
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 18 and last["epoch"] == 2
