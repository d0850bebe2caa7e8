"""Faults and bad input: resume after a hard kill, NaN loss, unsafe or corrupt checkpoints, Ctrl-C,
determinism, and random invalid overrides."""

from __future__ import annotations

import errno
import math
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import REPO, compose_config
from hydra.errors import HydraException

from zoo.errors import CheckpointError, ConfigError
from zoo.run.callbacks import LastCheckpoint, NonFiniteLossError
from zoo.run.training import train
from zoo.tasks import Supervised


class Payload:
    """Unpickling this writes a marker file: proof that loading ran code from the checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def cli(*args: str, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "train.py"),
        *args,
        f"hydra.run.dir={run_dir}",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
    ]


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    train(compose_config(folder, ["model=mlp", "trainer.max_epochs=1"]))
    return folder / "checkpoints" / "last.ckpt"


def test_planted_pickle_payload_never_runs(trained_checkpoint, tmp_path):
    marker = tmp_path / "payload-ran"
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    checkpoint["payload"] = Payload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(checkpoint, evil)
    with pytest.raises(CheckpointError, match="refusing to load .*could run code"):
        Supervised.load_from_checkpoint(evil)
    run = tmp_path / "run"
    result = subprocess.run(
        cli("model=mlp", "trainer.max_epochs=1", f"ckpt_path={evil}", run_dir=run),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert re.search(r"^error: refusing to load .*evil.ckpt", result.stderr, re.MULTILINE)
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert not list(run.rglob("*.ckpt"))


def test_truncated_checkpoint_gives_one_clear_line(trained_checkpoint, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(trained_checkpoint.read_bytes()[:4000])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as error:
        Supervised.load_from_checkpoint(broken)
    assert "\n" not in str(error.value)
    config = compose_config(tmp_path / "run", ["model=mlp", f"ckpt_path={broken}"])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(config)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(compose_config(tmp_path / "fresh", ["model=mlp", "ckpt_path=last"]))


def test_new_run_never_overwrites_an_earlier_runs_checkpoints(trained_checkpoint):
    before = trained_checkpoint.read_bytes()
    folder = trained_checkpoint.parent.parent
    with pytest.raises(ConfigError, match="already holds an earlier run's checkpoints"):
        train(compose_config(folder, ["model=mlp", "trainer.max_epochs=1"]))
    with pytest.raises(
        CheckpointError, match=r"holds another model or size than this run's ConvNet"
    ):
        train(compose_config(folder, ["model=cnn", "ckpt_path=last"]))
    assert trained_checkpoint.read_bytes() == before


@pytest.mark.slow
def test_resuming_with_other_overrides_names_the_runs_own_command(tmp_path):
    run = tmp_path / "run"
    first = subprocess.run(
        cli("model=mlp", "model.hidden_sizes=[32]", "trainer.max_epochs=1", run_dir=run),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    result = subprocess.run(
        cli("trainer.max_epochs=2", "ckpt_path=last", run_dir=run),  # forgot model=...
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    resume = shlex.split(line.split("resume with: ")[1])
    assert {
        "model=mlp",
        "model.hidden_sizes=[32]",
        "ckpt_path=last",
        f"hydra.run.dir={run}",
    } <= set(resume)
    command = [
        sys.executable,
        str(REPO / "train.py"),
        *("trainer.max_epochs=2" if arg == "trainer.max_epochs=1" else arg for arg in resume[2:]),
    ]
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and re.search(r"test/acc [\d.]+, .*, 2 epochs", again.stdout), (
        again.stderr[-2000:]
    )


def test_trained_checkpoint_restores_for_inference(trained_checkpoint):
    model = Supervised.load_from_checkpoint(trained_checkpoint).eval()
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_nan_loss_stops_with_one_line_and_keeps_a_good_checkpoint(tmp_path):
    config = compose_config(
        tmp_path,
        [
            "model=mlp",
            "optimizer=sgd",
            "optimizer.lr=1e12",
            "callbacks.last_checkpoint.every_n_train_steps=1",
        ],
    )
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ .*learning rate too high") as error:
        train(config)
    assert "\n" not in str(error.value)
    kept = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in kept["state_dict"].values())


def test_resume_applies_a_new_learning_rate_and_refuses_another_optimizer(tmp_path):
    run = ["model=mlp", "optimizer=sgd", "optimizer.lr=0.1", "scheduler=cosine"]
    run.append("scheduler.T_max=4")
    train(compose_config(tmp_path, [*run, "trainer.max_epochs=1"]))
    resume = ["ckpt_path=last", "trainer.max_epochs=2"]
    with pytest.raises(CheckpointError, match="resume with its optimizer"):  # not a KeyError
        train(compose_config(tmp_path, ["model=mlp", "optimizer.lr=0.1", *resume]))
    train(compose_config(tmp_path, [*run, *resume, "optimizer.lr=0.01"]))  # what a NaN asks for
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    scheduler = resumed["lr_schedulers"][0]
    assert scheduler["base_lrs"] == [pytest.approx(0.01)]  # the schedule goes on from the new lr
    lr = resumed["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.01 * (1 + math.cos(math.pi * 2 / 4)) / 2)  # epoch 2 of T_max 4


def test_last_checkpoint_is_due_by_training_time_or_step_count():
    def trainer(step: int) -> SimpleNamespace:  # what LastCheckpoint.due reads, one process
        return SimpleNamespace(global_step=step, world_size=1)

    clock_step = LastCheckpoint.CLOCK_STEPS
    timed = LastCheckpoint(every_n_seconds=60)
    assert not timed.due(trainer(clock_step))  # 60 s have not passed yet
    timed.last_write -= 61  # as if the last write was 61 s ago
    assert timed.due(trainer(clock_step))
    assert not timed.due(trainer(clock_step + 1))  # the clock is read every CLOCK_STEPS steps only
    counted = LastCheckpoint(every_n_seconds=None, every_n_train_steps=7)
    assert [step for step in range(22) if counted.due(trainer(step))] == [7, 14, 21]


def test_last_checkpoint_written_mid_first_epoch_is_replaced_at_the_epoch_end(tmp_path):
    # Lightning versions a last.ckpt it did not write itself (last-v1.ckpt), which would leave
    # ckpt_path=last pointing at the stale mid-epoch file.
    train(
        compose_config(
            tmp_path,
            [
                "model=mlp",
                "model.hidden_sizes=[16]",
                "trainer.max_epochs=1",
                "callbacks.last_checkpoint.every_n_train_steps=5",
            ],
        )
    )
    folder = tmp_path / "checkpoints"
    assert sorted(path.name for path in folder.glob("last*.ckpt")) == ["last.ckpt"]
    last = torch.load(folder / "last.ckpt", weights_only=True)
    best = next(folder.glob("best-*.ckpt"))
    assert last["global_step"] == torch.load(best, weights_only=True)["global_step"] > 5


class InterruptDuringValidation(L.Callback):
    """Ctrl-C as it lands when it arrives while a fit is validating."""

    def on_validation_batch_start(self, trainer: L.Trainer, *args) -> None:
        if not trainer.sanity_checking:
            raise KeyboardInterrupt


def test_ctrl_c_during_validation_saves_a_checkpoint(tmp_path, capsys):
    config = compose_config(
        tmp_path,
        [
            "model=mlp",
            "model.hidden_sizes=[16]",
            "trainer.max_epochs=2",
            f"+callbacks.interrupt._target_={__name__}.InterruptDuringValidation",
        ],
    )
    with pytest.raises(SystemExit) as exit_:
        train(config)
    assert exit_.value.code == 130
    saved = re.search(
        r"interrupted at step (\d+): checkpoint saved to (\S+);", capsys.readouterr().out
    )
    assert saved and Path(saved.group(2)) == tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(saved.group(2), weights_only=True)["global_step"] == int(saved.group(1)) > 0
    train(
        compose_config(
            tmp_path,
            ["model=mlp", "model.hidden_sizes=[16]", "trainer.max_epochs=2", "ckpt_path=last"],
        )
    )
    assert re.search(r"test/acc [\d.]+, .*, 2 epochs", capsys.readouterr().out)


def test_same_seed_deterministic_runs_give_identical_metrics(tmp_path):
    overrides = [
        "model=cnn",
        "model.channels=[4]",
        "trainer.max_epochs=1",
        "trainer.deterministic=true",
        "trainer.accelerator=cpu",
        "seed=3",
    ]
    first = train(compose_config(tmp_path / "a", overrides))
    second = train(compose_config(tmp_path / "b", overrides))
    assert first == second


INVALID_OVERRIDES = [
    "data.batch_size=abc",
    "data.batch_size=-4",
    "data.batch_size=2.5",
    "model.channels=[-1,4]",
    "model.channels=abc",
    "optimizer.lr=-1e-3",
    "trainer.max_epochs=-2",
    "model.nonsense=1",
    "+model.nonsense=1",
    "+data.nonsense=1",
    "trainer.nonsense=1",
    "+trainer.nonsense=1",
    "data.val_fraction=1.5",
    "data.val_fraction=-0.1",
    "data.loader=fast",
    "data.num_workers=-1",
    "callbacks.last_checkpoint.every_n_train_steps=-1",
    "callbacks.last_checkpoint.every_n_seconds=0",
    "model=mlp model.hidden_sizes=abc",
    "model=mlp model.activation=5",
    "model=mlp model.hidden_sizes=[8,-8]",
    "model.dropout=abc",
    "optimizer.lr=abc",
    "trainer.max_epochs=abc",
    "seed=abc",
    "trainer.max_steps=1.5",
]


@pytest.mark.parametrize("override", random.Random(6).sample(INVALID_OVERRIDES, 8))
def test_random_invalid_overrides_fail_fast(tmp_path, override):
    key = override.split()[-1].split("=")[0].lstrip("+").split(".")[-1]
    with pytest.raises((ConfigError, HydraException)) as error:
        train(compose_config(tmp_path, override.split()))
    assert key in str(error.value).splitlines()[0]  # Hydra adds a hint line to its own errors
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("override", random.Random(7).sample(INVALID_OVERRIDES, 2))
def test_random_invalid_overrides_fail_fast_on_the_command_line(tmp_path, override):
    result = subprocess.run(
        cli(*override.split(), run_dir=tmp_path / "run"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


SLOW_RUN = [
    "model=mlp",
    "data.batch_size=4",
    "trainer.max_epochs=2",
    "callbacks.last_checkpoint.every_n_train_steps=20",
]


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_to_the_same_epoch_count(tmp_path):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        cli(*SLOW_RUN, run_dir=run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(last, process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    killed_at = torch.load(last, weights_only=True)
    assert (
        killed_at["epoch"] == 0 and 0 < killed_at["global_step"] < 250
    )  # mid first epoch (292 steps)
    result = subprocess.run(
        cli(*SLOW_RUN, "ckpt_path=last", run_dir=run), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = re.search(r"test/acc ([\d.]+), .*, (\d+) epochs", result.stdout)
    assert summary and int(summary.group(2)) == 2
    assert float(summary.group(1)) > 0.85
    assert torch.load(last, weights_only=True)["global_step"] > killed_at["global_step"]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, stop):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    long_run = [*SLOW_RUN, "trainer.max_epochs=50"]  # cannot finish before the signal arrives
    long_run.remove("trainer.max_epochs=2")
    # A shell without job control (CI) starts background jobs with SIGINT ignored, and the child
    # would inherit that; restore the default so Python turns SIGINT into KeyboardInterrupt.
    process = subprocess.Popen(
        cli(*long_run, run_dir=run),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(last, process)
    time.sleep(0.3)
    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr and process.returncode == 128 + stop  # as shells expect
    saved = re.search(
        r"interrupted at step (\d+): checkpoint saved to ([^;\s]+); resume with: (.*)", stdout
    )
    assert saved, stdout[-2000:] + stderr[-2000:]
    assert torch.load(saved.group(2), weights_only=True)["global_step"] == int(saved.group(1))
    assert Path(saved.group(2)) == last
    resume = shlex.split(saved.group(3))
    assert (
        resume[:2] == ["python", "train.py"]
        and f"hydra.run.dir={run}" in resume
        and "ckpt_path=last" in resume
    )
    assert set(long_run) <= set(resume)  # the run's own overrides, so it resumes the same model
    refused = subprocess.run(
        cli(*long_run, run_dir=run), capture_output=True, text=True, timeout=120
    )
    assert (
        refused.returncode == 2 and "already holds an earlier run's checkpoints" in refused.stderr
    )
    assert torch.load(last, weights_only=True)["global_step"] == int(saved.group(1))  # untouched


def test_full_disk_ends_with_one_line_and_leaves_no_truncated_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save

    def half_then_full(obj, file, *args, **kwargs):
        real_save({"half": torch.zeros(10)}, file)  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(CheckpointError) as error:
        train(compose_config(tmp_path, ["model=mlp", "trainer.max_epochs=1"]))
    (line,) = str(error.value).splitlines()
    assert "No space left on device" in line and str(tmp_path / "checkpoints") in line
    assert not [p for p in tmp_path.rglob("*") if ".ckpt" in p.name]  # nothing truncated


def test_unwritable_log_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), f"paths.log_dir={blocker}/logs"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"{blocker}/logs" in line


SLIPPING_VALUES = {  # values that used to fail mid-training, or never
    "seed=-1": "seed must be in",
    "scheduler=plateau scheduler.factor=1.5": "Factor should be < 1.0",
    "scheduler=cosine scheduler.T_max=0": "divides by is 0",
    "scheduler=plateau +scheduler.monitor=val/nope": "scheduler.monitor=val/nope is never logged",
    "callbacks.model_checkpoint.monitor=val/nope": "monitor=val/nope is never logged",
    "model=lstm model.bidirectional=abc": "model.bidirectional must be true or false",
    "model.compile=abc": "model.compile must be true or false",
    "data.val_fraction=0.0001": "split is empty",
    "optimizer.lr=inf": "optimizer.lr must be > 0 and finite",
    "model=gan model.fid_classifier_epochs=-1": "fid_classifier_epochs must be a positive",
    "+foo=1": "unknown top-level key 'foo'",
    "threads=0": "threads must be auto or an integer >= 1",
    "trainer.precision=abc": "trainer.precision must be one of",
}


@pytest.mark.parametrize("override", SLIPPING_VALUES)
def test_values_that_used_to_slip_through_stop_before_training(tmp_path, override):
    with pytest.raises(ConfigError) as error:
        train(compose_config(tmp_path, [*override.split(), "trainer.max_epochs=1"]))
    (line,) = str(error.value).splitlines()
    assert SLIPPING_VALUES[override] in line
    assert not list(tmp_path.rglob("*.ckpt"))  # refused before any training step
