"""The site's "Use in your own project" examples (docs/reuse.md) run outside the repo, zoo
installed as a wheel."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO


def site_examples() -> list[str]:
    page = (REPO / "docs" / "reuse.md").read_text()
    section = page.split("## Use in your own project")[1].split("\n## ")[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


@pytest.mark.slow
def test_site_reuse_examples_run_from_an_installed_wheel(tmp_path):
    examples = site_examples()
    assert len(examples) == 2
    source = tmp_path / "source"  # build from a copy: no build/ or egg-info left in the repo
    shutil.copytree(REPO / "zoo", source / "zoo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "conf", source / "conf")
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "wheel"),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    site = tmp_path / "site"
    wheel = next((tmp_path / "wheel").glob("zoo-*.whl"))
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
    )
    work = tmp_path / "project"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import zoo.registry as r; print(r.__file__, r.CONFIG_DIR)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(path.startswith(str(site)) for path in where.stdout.split())
    for example in examples:
        result = subprocess.run(
            [sys.executable, "-c", example],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "cnn.ckpt").is_file()
