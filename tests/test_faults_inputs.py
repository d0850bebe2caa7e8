"""Issue 24, by class: outputs never written over inputs, runs that stay in their folder, data
read once and only from regular files, checkpoints checked before anything is built, one line
for each bad value, and no silent wrong result. Each test tries several members of its class."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import compose_config
from hydra.core.override_parser.overrides_parser import OverridesParser
from images import write_folder
from test_export import checkpoint
from torch.utils.tensorboard import SummaryWriter

from zoo.cli import compare as compare_cli
from zoo.cli import export as export_cli
from zoo.cli import predict as predict_cli
from zoo.cli import sample as sample_cli
from zoo.cli import train as train_cli
from zoo.cli.outputs import write_atomically
from zoo.data.files import DataFileError, read_bytes
from zoo.data.folder import FolderDataModule
from zoo.data.tables import CSVDataModule
from zoo.errors import CheckpointError, ConfigError
from zoo.run import checkpoints
from zoo.run.callbacks import FiniteLossGuard, NonFiniteLossError
from zoo.run.training import build, build_run, train
from zoo.run.validation import check_config


@contextmanager
def within(seconds: int):
    """Fail instead of hanging (a pipe opened for reading blocks until a writer comes)."""

    def stop(*_):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# --- outputs written over inputs -------------------------------------------------------------
@pytest.fixture
def mlp(tmp_path) -> Path:
    return checkpoint("mlp", "image", tmp_path)


@pytest.fixture
def gan(tmp_path) -> Path:
    return checkpoint("gan", "image", tmp_path)


def untouched(*paths: Path):
    """The paths' bytes now; compare with a later call."""
    return {p: p.read_bytes() for p in paths}


def test_predict_refuses_outputs_that_are_inputs_checkpoints_or_folders(mlp, tmp_path, capsys):
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.random.default_rng(0).normal(size=(3, 1, 8, 8)).astype(np.float32))
    other = tmp_path / "checkpoints" / "best.ckpt"
    other.parent.mkdir()
    other.write_bytes(mlp.read_bytes())
    link = tmp_path / "link.csv"
    link.symlink_to(mlp)
    before = untouched(mlp, inputs, other)
    for out in (mlp, inputs, other, link, tmp_path, tmp_path / "checkpoints"):
        assert predict_cli.main([f"ckpt_path={mlp}", f"inputs={inputs}", f"out={out}"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert str(out) in line
    assert untouched(mlp, inputs, other) == before
    assert predict_cli.main([f"ckpt_path={mlp}", f"inputs={inputs}", f"out={tmp_path}/p.csv"]) == 0
    assert (tmp_path / "p.csv").read_text().count("\n") == 4  # header + 3 rows
    assert not list(tmp_path.glob(".*partial*"))


def test_export_and_sample_refuse_to_write_over_their_checkpoint(mlp, gan, tmp_path, capsys):
    before = untouched(mlp, gan)
    assert export_cli.main([f"ckpt_path={mlp}", f"out={mlp}", "format=torchscript"]) == 2
    assert "input" in one_error_line(capsys.readouterr().err)
    assert export_cli.main([f"ckpt_path={mlp}", f"out={gan}", "format=torchscript"]) == 2
    assert "checkpoint" in one_error_line(capsys.readouterr().err)
    assert sample_cli.main([f"ckpt_path={gan}", f"out={gan}", "n=4"]) == 2
    one_error_line(capsys.readouterr().err)
    assert sample_cli.main([f"ckpt_path={gan}", f"out={tmp_path}", "n=4"]) == 2
    assert "folder" in one_error_line(capsys.readouterr().err)
    assert untouched(mlp, gan) == before


def test_compare_refuses_a_plot_it_cannot_write(tmp_path, capsys):
    run = tmp_path / "logs" / "run"
    with SummaryWriter(run) as writer:
        for step, value in enumerate((0.5, 0.7)):
            writer.add_scalar("val/acc", value, step)
        writer.add_scalar("test/acc", 0.7, 1)
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"weights")
    for plot, words in (
        (tmp_path / "x.xyz", "matplotlib writes"),
        (tmp_path / "x", "matplotlib writes"),
        (ckpt, "checkpoint"),
        (tmp_path, "folder"),
        (blocker / "x.png", "cannot write"),
    ):
        assert compare_cli.main([str(tmp_path / "logs"), f"plot={plot}"]) == 2
        captured = capsys.readouterr()
        assert words in one_error_line(captured.err + captured.out)
    assert ckpt.read_bytes() == b"weights"
    assert compare_cli.main([str(tmp_path / "logs"), f"plot={tmp_path}/c.svg"]) == 0
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    target = tmp_path / "preds.csv"
    target.write_text("old")

    def fails_midway(path: Path) -> None:
        path.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(ValueError, match=f"cannot write {target}: No space left"):
        write_atomically(target, fails_midway)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["preds.csv"]


# --- options: each bad one named in one line ---------------------------------------------------
@pytest.mark.parametrize(
    ("tool", "args", "words"),
    [
        (sample_cli, ["seed=abc"], "seed must be an integer, got 'abc'"),
        (sample_cli, ["nrow=0"], "nrow must be >= 1"),
        (sample_cli, ["temperature=1e-300"], "temperature must be >="),
        (sample_cli, ["n=nan"], "n must be an integer"),
        (predict_cli, ["inputs=x", "top_k=1.5"], "top_k must be an integer"),
        (predict_cli, ["inputs=x", "oops"], "takes key=value options, got 'oops'"),
        (export_cli, ["format=tflite"], "format must be one of"),
        (compare_cli, ["top=0"], "top must be >= 1"),
        (compare_cli, ["columns=,"], "columns needs one or more"),
        (compare_cli, ["--top", "5"], "takes key=value options, got '--top'"),
    ],
)
def test_each_bad_option_is_one_line_naming_it(tool, args, words, mlp, capsys):
    given = args if tool is compare_cli else [f"ckpt_path={mlp}", *args]
    assert tool.main(given) == 2
    captured = capsys.readouterr()
    assert words in one_error_line(captured.err)


@pytest.mark.parametrize("tool", [predict_cli, export_cli, sample_cli, compare_cli])
def test_every_tool_has_a_real_help(tool, capsys):
    assert tool.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python ") and "options (key=value):" in text
    assert all(f"  {name}" in text for name in tool.OPTIONS)


# --- a new run in an old run's folder; paths that leave the run folder -------------------------
def test_a_folder_holding_another_runs_record_is_refused(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=0.5\n")
    config = compose_config(tmp_path, ["model=mlp", "trainer.max_epochs=1"])
    with pytest.raises(ConfigError, match="already holds an earlier run's record"):
        train(config)
    assert (tmp_path / ".hydra" / "overrides.yaml").read_text() == "- optimizer.lr=0.5\n"
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.glob("events*"))


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("callbacks.model_checkpoint.dirpath=abc", "not an absolute folder"),
        ("callbacks.model_checkpoint.dirpath=''", "not an absolute folder"),
        ("callbacks.model_checkpoint.filename=../../x", "inside the checkpoint folder"),
        ("callbacks.model_checkpoint.filename=/tmp/x", "inside the checkpoint folder"),
        ("logger.save_dir=relative/logs", "not an absolute folder"),
        ("paths.log_dir=''", "paths.log_dir is empty"),
    ],
)
def test_paths_that_would_leave_the_run_folder_are_refused(make_config, override, words):
    with pytest.raises(ConfigError, match=words):
        check_config(make_config(override))


# --- one line instead of a traceback ---------------------------------------------------------
@pytest.mark.parametrize(
    "override",
    [
        "trainer.gradient_clip_val=nan",
        "trainer.gradient_clip_val=-1",
        "trainer.gradient_clip_val=inf",
        "+trainer.accumulate_grad_batches=0",
        "+trainer.accumulate_grad_batches=-2",
        "+trainer.val_check_interval=0",
        "+trainer.val_check_interval=1.5",
        "+trainer.val_check_interval=-3",
        "+trainer.check_val_every_n_epoch=0",
        "+trainer.limit_train_batches=-1",
        "+trainer.limit_val_batches=2.5",
        "model._target_=os.system",
        "model._target_=builtins.print",
        "model._target_=json.JSONDecoder",
        "model._target_=no.such.Module",
        "optimizer._target_=json.dumps",
        "optimizer._target_=torch.nn.Linear",
    ],
)
def test_values_torch_would_reject_mid_run_are_one_line(make_config, override):
    with pytest.raises(ConfigError):
        check_config(make_config(override))


@pytest.mark.parametrize("target", ["smtplib.Optimizer", "antigravity.Fly", "turtle.Adam"])
def test_an_optimizer_target_is_refused_before_its_module_is_imported(make_config, target):
    module = target.split(".")[0]
    was_imported = module in sys.modules
    for section in ("optimizer", "scheduler"):
        override = (
            f"optimizer._target_={target}"
            if section == "optimizer"
            else (f"+scheduler._target_={target}")
        )
        with pytest.raises(ConfigError, match="not importing it"):
            check_config(make_config(override))
    assert (module in sys.modules) == was_imported


@pytest.mark.parametrize("target", ["shutil.rmtree", "os.remove", "os.kill"])
def test_hydras_blocklist_message_is_shown_whole(target):
    config = compose_config(Path("/nonexistent"), [f"+callbacks.x._target_={target}"]).callbacks.x
    with pytest.raises(ConfigError) as refused:
        build(config)
    message = str(refused.value)
    assert "\n" not in message and "HYDRA_INSTANTIATE_ALLOWLIST_OVERRIDE" in message
    assert message.rstrip().endswith("to bypass") or "full_key" in message


def test_half_precision_on_a_cpu_is_one_line(make_config):
    # (16-mixed on a CPU Lightning itself turns into bf16-mixed, with a warning)
    for precision, words in (("16-true", "needs a GPU"), ("17", "precision")):
        with pytest.raises(ConfigError, match=words):
            build_run(make_config(f"trainer.precision={precision}", "trainer.accelerator=cpu"))


def test_any_other_failure_of_a_run_is_one_line_and_exit_2(make_config, monkeypatch, capsys):
    def crash(config):
        raise RuntimeError("deep inside a library\n  frame 1\n  frame 2")

    monkeypatch.setattr(train_cli, "train", crash)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as stop:
        train_cli.run.__wrapped__(make_config())
    assert stop.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("error: RuntimeError: deep inside a library (HYDRA_FULL_ERROR=1")


# --- data read once, regular files only ---------------------------------------------------------
def test_an_image_folder_reads_each_file_once_under_its_own_class(tmp_path, capsys):
    root = write_folder(tmp_path / "images", classes=2, per_class=12, colour=False)
    a, b = root / "class_0", root / "class_1"
    (a / "loop").symlink_to(root, target_is_directory=True)  # back to the dataset: a loop
    (b / "elsewhere").symlink_to(tmp_path, target_is_directory=True)  # out of the dataset
    (b / "from_a.png").symlink_to(a / "1.png")  # another class's image
    os.link(a / "3.png", b / "hard.png")  # the same file twice
    os.mkfifo(a / "pipe.png")  # would block
    data = FolderDataModule(str(root), image_size=8, batch_size=4)
    with within(60):
        data.setup()
    files = [f for split in data.files.values() for f in split]
    assert len(files) == 24 and len({f for f, _ in files}) == 24
    assert all(Path(f).parent.name == f"class_{label}" for f, label in files)
    splits = [{f for f, _ in data.files[s]} for s in ("train", "val", "test")]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    note = capsys.readouterr().out
    for words in ("2 linked folders", "1 linked files", "1 non-regular files", "1 duplicate"):
        assert words in note


def test_pipes_and_folders_are_named_as_such_and_never_block(tmp_path):
    pipe = tmp_path / "pipe.csv"
    os.mkfifo(pipe)
    with within(30):
        with pytest.raises(DataFileError, match="not a regular file"):
            read_bytes(pipe)
        for path, words in ((pipe, "not a regular file"), (tmp_path, "is a folder")):
            with pytest.raises(ValueError, match=words):
                CSVDataModule(str(path), target="y").setup()
        with pytest.raises(FileNotFoundError, match="no such file"):
            CSVDataModule(str(tmp_path / "missing.csv"), target="y").setup()
        with pytest.raises(FileNotFoundError, match="not a folder"):
            FolderDataModule(str(pipe)).setup()


@pytest.mark.parametrize("cell", ["1e308", "-1e308", "3.5e38", "1e39"])
def test_table_values_float32_cannot_hold_are_refused(tmp_path, cell):
    rows = [f"{v},{v % 2}" for v in range(20)] + [f"{cell},1"]
    path = tmp_path / "t.csv"
    path.write_text("x,y\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="float32"):
        CSVDataModule(str(path), target="y", kind="classification").setup()


def test_a_column_whose_spread_overflows_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    rows = [f"{'3e38' if i % 2 else '-3e38'},{i % 2}" for i in range(20)]
    path.write_text("x,y\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="too wide a range"):
        CSVDataModule(str(path), target="y", kind="classification").setup()


@pytest.mark.parametrize("delimiter", ["", ";;"])
def test_a_delimiter_that_is_not_one_character_is_one_line(tmp_path, delimiter):
    path = tmp_path / "t.csv"
    path.write_text("x,y\n1,0\n")
    with pytest.raises(ValueError, match="data.delimiter must be one character"):
        CSVDataModule(str(path), target="y", delimiter=delimiter).setup()


# --- predict: no silent wrong answer -----------------------------------------------------------
@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.full((2, 1, 8, 8), np.nan, np.float32), "non-finite value"),
        (np.full((2, 1, 8, 8), np.inf, np.float32), "non-finite value"),
        (np.zeros((0, 1, 8, 8), np.float32), "holds no inputs"),
        (np.array(["a", "b"]), "shape"),
        (np.zeros((2, 1, 8, 8), bool), "not numbers"),
    ],
)
def test_predict_refuses_inputs_it_cannot_predict(mlp, tmp_path, capsys, array, words):
    inputs = tmp_path / "x.npy"
    np.save(inputs, array)
    out = tmp_path / "p.csv"
    assert predict_cli.main([f"ckpt_path={mlp}", f"inputs={inputs}", f"out={out}"]) == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_predict_skips_pipes_in_an_image_folder_and_refuses_one_as_input(tmp_path, capsys):
    ckpt = checkpoint("cnn", "image", tmp_path)
    folder = write_folder(tmp_path / "images", classes=1, per_class=3, colour=False) / "class_0"
    os.mkfifo(folder / "pipe.png")
    pipe = tmp_path / "pipe.npy"
    os.mkfifo(pipe)
    with within(60):
        assert predict_cli.main([f"ckpt_path={ckpt}", f"inputs={folder}", f"out={tmp_path}/a"]) == 0
        assert "skipped 1" in capsys.readouterr().err
        assert predict_cli.main([f"ckpt_path={ckpt}", f"inputs={pipe}", f"out={tmp_path}/b"]) == 2
        assert "not a regular file" in one_error_line(capsys.readouterr().err)


def test_predict_refuses_token_ids_outside_the_vocabulary(tmp_path, capsys):
    from test_models import quiet_trainer

    from zoo.data.spec import DataSpec
    from zoo.registry import build_model, model_config

    model = build_model(model_config("lstm"), DataSpec((5,), 3, "classification", "tokens", 7))
    trainer = quiet_trainer(max_epochs=0)
    trainer.strategy.connect(model)
    ckpt = tmp_path / "lstm.ckpt"
    trainer.save_checkpoint(ckpt)
    for ids, words in (([[0, 1, 2, 3, 7]], "token id 7"), ([[0, -1, 2, 3, 4]], "token id -1")):
        np.save(tmp_path / "ids.npy", np.array(ids))
        args = [f"ckpt_path={ckpt}", f"inputs={tmp_path}/ids.npy", f"out={tmp_path}/p.csv"]
        assert predict_cli.main(args) == 2
        assert words in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("content", [b"hello, I am text\n", b"", b"PK\x03\x04 truncated zip"])
def test_a_file_that_is_no_checkpoint_is_one_line_in_every_tool(tmp_path, capsys, content):
    fake = tmp_path / "fake.ckpt"
    fake.write_bytes(content)
    for tool, extra in (
        (predict_cli, [f"inputs={tmp_path}"]),
        (export_cli, [f"out={tmp_path}/m.onnx"]),
        (sample_cli, [f"out={tmp_path}/s.png"]),
    ):
        assert tool.main([f"ckpt_path={fake}", *extra]) == 2
        assert "checkpoint" in one_error_line(capsys.readouterr().err)


# --- checkpoints: configs checked against tensors before building --------------------------
@pytest.mark.parametrize(
    ("option", "value"), [("hidden_sizes", [200_000, 200_000]), ("hidden_sizes", [64])]
)
def test_a_config_that_disagrees_with_its_weights_is_refused_before_building(
    mlp, tmp_path, option, value
):
    saved = torch.load(mlp, weights_only=True)
    saved["hyper_parameters"]["net"][option] = value
    edited = tmp_path / "edited.ckpt"
    torch.save(saved, edited)
    import zoo

    with pytest.raises(CheckpointError, match="config and weights disagree|holds no weights"):
        zoo.load(edited)


# --- silent wrong results: a loss that explodes ------------------------------------------------
def guard_trainer() -> SimpleNamespace:
    return SimpleNamespace(
        strategy=SimpleNamespace(reduce=lambda value, reduce_op: value),
        optimizers=[SimpleNamespace(param_groups=[{"lr": 1000.0}])],
        checkpoint_callback=None,
        global_step=7,
        current_epoch=0,
    )


@pytest.mark.parametrize(
    ("losses", "factor", "stops"),
    [
        ([2.3, 2.0, 5e4], 1e4, True),  # exploded
        ([2.3, 1.4e9], 1e4, True),  # Adam at lr=1000
        ([0.01, 5e3], 1e4, False),  # small first loss: measured against 1
        ([0.01, 2e4], 1e4, True),
        ([2.3, float("nan")], 1e4, True),
        ([2.3, 1.4e9], None, False),  # explode_factor=null: NaN/inf only
        ([500.0, 1e6, 2.0], 1e4, False),  # a regression loss in its own units
    ],
)
def test_a_loss_that_explodes_stops_like_a_nan(losses, factor, stops):
    guard, trainer = FiniteLossGuard(explode_factor=factor), guard_trainer()
    for loss in losses:
        guard.on_before_backward(trainer, None, torch.tensor(loss))
    if stops:
        with pytest.raises(NonFiniteLossError, match="training loss became"):
            guard.check(trainer)
    else:
        guard.check(trainer)


@pytest.mark.parametrize("factor", [1, 0.5, -1, "big", True])
def test_explode_factor_must_be_above_one(factor):
    with pytest.raises(ValueError, match="explode_factor"):
        FiniteLossGuard(explode_factor=factor)


# --- the printed resume command -----------------------------------------------------------------
@pytest.mark.parametrize(
    "folder",
    ["/tmp/été/run", "/tmp/日本/optimizer=sgd,lr=1", "/tmp/it's here", "/tmp/plain/run_1"],
)
@pytest.mark.parametrize("argv0", ["train.py", "zoo train"])
def test_the_resume_command_parses_back_and_names_the_form_used(folder, argv0, monkeypatch):
    monkeypatch.setattr(sys, "argv", [argv0])
    command = checkpoints.resume_command(Path(folder) / "checkpoints" / "last.ckpt", ["model=mlp"])
    words = shlex.split(command)
    assert words[:2] == (["zoo", "train"] if argv0 == "zoo train" else ["python", "train.py"])
    parser = OverridesParser.create()
    run_dir = parser.parse_override(words[-1])
    assert run_dir.key_or_group == "hydra.run.dir" and run_dir.value() == folder


def test_compare_reads_runs_whose_record_is_damaged(tmp_path, capsys):
    run = tmp_path / "logs" / "cnn-digits"
    with SummaryWriter(run) as writer:
        writer.add_scalar("val/acc", 0.5, 0)
        writer.add_scalar("test/acc", 0.5, 0)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "hydra.yaml").write_text("hydra: [unclosed\n")
    (run / ".hydra" / "overrides.yaml").write_bytes(b"\xff\xfe")
    assert compare_cli.main([str(tmp_path / "logs"), f"plot={tmp_path}/c.png"]) == 0
    out = capsys.readouterr().out
    assert "note: ignoring" in out and "cnn" in out


def test_a_decompression_bomb_is_one_line_in_training_data_and_predict(tmp_path, monkeypatch):
    from PIL import Image

    root = write_folder(tmp_path / "images", classes=2, per_class=4, colour=False)
    ckpt = checkpoint("cnn", "image", tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # every test image is over twice that
    with pytest.raises(ValueError, match="not readable PNG/JPEG images .*larger than PIL's limit"):
        FolderDataModule(str(root), image_size=8).setup()
    out = tmp_path / "p.csv"
    args = [f"ckpt_path={ckpt}", f"inputs={root / 'class_0'}", f"out={out}"]
    assert predict_cli.main(args) == 2 and not out.exists()
