"""The `zoo` command: every subcommand with key=value options and a real --help, working from a
directory outside the checkout; messages name the form the user ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from zoo.cli import COMMANDS
from zoo.run.naming import hydra_value


def zoo_command() -> list[str]:
    """The installed `zoo` script beside this Python, else the same entry point through -c."""
    script = Path(sys.executable).with_name("zoo")
    if script.is_file():
        return [sys.executable, str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from zoo.cli import main; sys.argv[0] = 'zoo'; main()",
    ]


def zoo(*args: str, cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    """`zoo ARGS` run in `cwd`, importing this checkout's zoo package."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [*zoo_command(), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def test_every_subcommand_has_a_help_naming_the_zoo_form(tmp_path):
    for command in COMMANDS:
        result = zoo(command, "--help", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"zoo {command}" in result.stdout and "python " not in result.stdout.split("\n")[0]
    assert zoo("--help", cwd=tmp_path).returncode == 0
    unknown = zoo("fly", cwd=tmp_path)
    assert unknown.returncode == 2 and "error: unknown command 'fly'" in unknown.stderr
    assert not list(tmp_path.iterdir())  # help writes nothing


def test_a_bad_option_names_itself_and_the_form_used(tmp_path):
    result = zoo("sample", "ckpt_path=x.ckpt", "seed=abc", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: seed must be an integer, got 'abc'"
    result = zoo("predict", "inputs=x", cwd=tmp_path)
    assert result.returncode == 2 and "usage: zoo predict ckpt_path=..." in result.stderr


@pytest.mark.slow
def test_zoo_train_and_compare_work_from_outside_the_checkout(tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    logs = tmp_path / "logs"
    trained = zoo(
        "train",
        "model=mlp",
        "trainer.max_epochs=1",
        "threads=1",
        f"paths.log_dir={logs}",
        "~callbacks.progress_bar",
        cwd=work,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "mlp (FeedForward) on digits" in trained.stdout
    (run,) = (logs / "mlp-digits").iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    compared = zoo("compare", str(logs), "top=1", "columns=run,model,best", cwd=work)
    assert compared.returncode == 0, compared.stderr
    assert "val/acc (Supervised): 1 run" in compared.stdout
    assert (logs / "compare.png").read_bytes().startswith(b"\x89PNG")
    assert not list(work.iterdir())  # nothing written into the working directory
    # a new run in that run's folder is refused by name, and so is resuming with other settings
    again = zoo(
        "train", "model=mlp", f"hydra.run.dir={hydra_value(str(run))}", "threads=1", cwd=work
    )
    assert again.returncode == 2 and "already holds an earlier run's" in again.stderr
    other = zoo(
        "train",
        "model=cnn",
        f"hydra.run.dir={hydra_value(str(run))}",
        "ckpt_path=last",
        "threads=1",
        cwd=work,
    )
    assert other.returncode == 2
    assert "resume with: zoo train " in other.stderr


@pytest.mark.slow
def test_a_bad_point_of_a_sweep_is_recorded_and_the_sweep_summarised(tmp_path):
    result = zoo(
        "train",
        "-m",
        "model=mlp",
        "trainer.max_epochs=1",
        "threads=1",
        f"paths.log_dir={tmp_path / 'logs'}",
        "~callbacks.progress_bar",
        "trainer.gradient_clip_val=0.5,nan",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "2 points, 1 ran, 0 not applicable, 1 failed" in result.stdout
    assert "Traceback" not in result.stderr


def test_the_shims_still_run(tmp_path):
    for tool in ("predict", "export", "sample", "compare"):
        result = subprocess.run(
            [sys.executable, str(REPO / f"{tool}.py"), "--help"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert result.returncode == 0 and result.stdout.startswith(f"usage: python {tool}.py")


def test_a_command_imports_with_the_collector_paused_and_leaves_it_running():
    code = (
        "import gc; from zoo.cli import command_main; main = command_main('train'); "
        "print(callable(main), gc.isenabled(), gc.get_freeze_count())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    is_main, enabled, frozen = result.stdout.split()
    assert (is_main, enabled) == ("True", "True")
    assert int(frozen) > 100_000  # torch's, Lightning's and Hydra's objects, out of collections
