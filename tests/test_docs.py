"""The README and the site (docs/, mkdocs.yml) say only what works: every training command in
their shell blocks composes against conf/ and passes the zoo's config checks, every other
command names a real tool, script or option, the family pages' "In your own code" examples run,
the README stays short, every page is in the navigation, and the README's scores are the
results table's. No training: composing and checking a config takes milliseconds."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, compose_config

from zoo.cli import COMMANDS
from zoo.run.validation import check_config

DOCS = REPO / "docs"
README = REPO / "README.md"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
TOOLS = ("compare", "predict", "export", "sample")  # key=value tools with an OPTIONS table
# Commands that are not the zoo's own, each with why the test leaves it alone.
OTHERS = {
    "pip": "the package installer (CI runs the install command itself)",
    "pytest": "the test suite (CI runs it)",
    "ruff": "the linter (CI runs it)",
    "lint-imports": "the layers contract (CI runs it)",
    "pre-commit": "the git hook installer",
    "mkdocs": "the site builder (CI runs mkdocs build --strict)",
    "tensorboard": "TensorBoard's own command line",
    "apt-get": "Debian's package manager",
    "source": "the shell",
    "scancel": "SLURM's command (tests/test_slurm.py runs it)",
}
SWEEP_POINTS = 4  # the first combinations of a sweep's values that are composed


def shell_blocks(path: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", path.read_text(), re.DOTALL)


def commands() -> list[tuple[str, str]]:
    """(page, command) for every command line of every shell block: continuation lines joined,
    comments and `&&` chains split off."""
    found = []
    for path in PAGES:
        for block in shell_blocks(path):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                for part in split_chain(words):
                    while re.fullmatch(r"[A-Z_]+=\S*", part[0]):  # OMP_NUM_THREADS=1 python ...
                        part = part[1:]
                    found.append((str(path.relative_to(REPO)), shlex.join(part)))
    return found


def split_chain(words: list[str]) -> list[list[str]]:
    parts = [[]]
    for word in words:
        if word == "&&":
            parts.append([])
        else:
            parts[-1].append(word)
    return [part for part in parts if part]


def training_overrides(words: list[str]) -> list[str] | None:
    """The overrides of a training command (`python train.py`, `zoo train`, torchrun on
    train.py), or None when the command is something else."""
    if words[:2] in (["python", "train.py"], ["zoo", "train"]):
        return words[2:]
    if words[0] == "torchrun" and "train.py" in words:
        return words[words.index("train.py") + 1 :]
    return None


def sweep_points(overrides: list[str]) -> list[list[str]]:
    """A `-m` sweep's first points: each `key=a,b` override split into its values (lists in
    brackets and escaped commas stay whole); a single run is its one point."""
    if "-m" not in overrides:
        return [overrides]
    choices = []
    for override in (o for o in overrides if o != "-m"):
        key, _, value = override.partition("=")
        values = re.split(r"(?<!\\),(?![^\[]*\])", value) if value else [value]
        choices.append([f"{key}={v}" for v in values])
    return [list(point) for point in itertools.islice(itertools.product(*choices), SWEEP_POINTS)]


TRAINING = [
    pytest.param(point, id=f"{page}: {command}"[:150])
    for page, command in commands()
    if (overrides := training_overrides(shlex.split(command))) is not None
    for point in sweep_points(overrides)
]
OTHER = [
    pytest.param(shlex.split(command), id=f"{page}: {command}"[:150])
    for page, command in commands()
    if training_overrides(shlex.split(command)) is None
]


def test_the_pages_hold_commands():
    assert len(TRAINING) > 50 and len(OTHER) > 20


@pytest.mark.parametrize("overrides", TRAINING)
def test_training_command_composes_and_passes_the_config_checks(tmp_path, overrides):
    # A placeholder such as <time> or <job id> stands for a value the reader fills in.
    overrides = [o.replace("<", "").replace(">", "") for o in overrides]
    config = compose_config(tmp_path, overrides)
    check_config(config)


def tool_options(tool: str) -> dict:
    return importlib.import_module(f"zoo.cli.{tool}").OPTIONS


def check_tool(tool: str, arguments: list[str]) -> None:
    assert tool in COMMANDS, f"zoo has no command {tool!r}"
    if tool not in TOOLS:
        return
    options = tool_options(tool)
    for argument in arguments:
        key, equals, _ = argument.partition("=")
        if equals:
            assert key in options, f"zoo {tool} takes no option {key!r}"
        else:
            assert argument == "--help" or tool == "compare", argument  # compare: folders


@pytest.mark.parametrize("words", OTHER)
def test_other_command_names_a_real_tool_script_or_option(words):
    first, rest = words[0], words[1:]
    if first in OTHERS:
        return
    if first == "zoo":
        check_tool(rest[0], rest[1:])
    elif first == "python" and rest[0] in ("-c", "-m"):
        if rest[0] == "-m":
            assert importlib.util.find_spec(rest[1]) is not None, rest[1]
    elif first == "python":
        script = REPO / rest[0]
        assert script.is_file(), f"no {rest[0]}"
        if script.parent == REPO:  # the shims: train.py, compare.py, ... call `zoo <tool>`
            check_tool(script.stem, rest[1:])
    elif first.startswith("scripts/"):
        assert (REPO / first).is_file(), first
    else:
        pytest.fail(f"a command the test does not know: {shlex.join(words)}")


def own_code_examples() -> list:
    examples = []
    for path in sorted((DOCS / "families").glob("*.md")):
        section = path.read_text().split("## In your own code")[1].split("\n## ")[0]
        for code in re.findall(r"```python\n(.*?)```", section, re.DOTALL):
            examples.append(pytest.param(code, id=path.stem))
    return examples


@pytest.mark.parametrize("code", own_code_examples())
def test_family_page_example_runs(code):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: more threads only wait for each other
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, "<example>", "exec"), {})  # noqa: S102 (the page's own code)
    finally:
        torch.set_num_threads(threads)


def test_every_family_page_has_an_example():
    assert len({p.id for p in own_code_examples()}) == len(list((DOCS / "families").glob("*.md")))


def test_readme_is_at_most_10_kb():
    assert README.stat().st_size <= 10 * 1024


def nav_pages(node) -> set[str]:
    if isinstance(node, str):
        return {node}
    if isinstance(node, dict):
        return set().union(*(nav_pages(v) for v in node.values()))
    return set().union(*(nav_pages(v) for v in node))


def test_every_page_is_in_the_navigation():
    site = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    in_nav = nav_pages(site["nav"])
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - in_nav == set(), "pages missing from mkdocs.yml's nav"
    assert in_nav - pages == set(), "nav entries without a page"


def readme_scores() -> list[str]:
    """The numbers in the last column of the README's architecture table."""
    section = README.read_text().split("## Architectures")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "no architecture table in the README"
    cells = [re.sub(r"<!--.*?-->", "", row.strip().strip("|").split("|")[-1]) for row in rows]
    return [n for cell in cells for n in re.findall(r"\d+(?:\.\d+)?", cell.replace(",", ""))]


def test_readme_scores_are_the_results_tables():
    results = (DOCS / "results.md").read_text()
    if "Written by `zoo results" not in results:
        pytest.skip("docs/results.md is not a generated table yet")
    missing = [n for n in readme_scores() if n not in results.replace(",", "")]
    assert not missing, f"README scores not in docs/results.md: {missing}"
    # Each score is its own row's bold headline: `<!-- result:cnn-digits --> 0.98 ± 0.01 (...)`.
    marked = re.findall(r"<!-- result:(\w+)-(\w+) -->([^(|]*)", README.read_text())
    assert marked, "no <!-- result:MODEL-DATA --> scores in the README"
    for model, data, score in marked:
        rows = [line for line in results.splitlines() if line.startswith(f"| {model} | {data} |")]
        assert rows, f"no {model} on {data} row in docs/results.md"
        assert f"**{score.strip()}**" in rows[0], f"{model}-{data}: {score.strip()} is not its row"
