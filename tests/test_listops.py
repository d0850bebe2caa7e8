"""ListOps: the generator, the release-format parser and evaluator, bad files, and both forms
(trees for tree networks, tokens for sequence networks)."""

from __future__ import annotations

import random
import statistics
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from zoo.data import ListOpsDataModule
from zoo.data.listops import VOCABULARY, evaluate, generate, generate_tree, parse, to_string
from zoo.errors import ConfigError
from zoo.run.training import build_run, train


def value_of(tree) -> int:
    """An independent evaluator over the generator's nested pairs ((op, a), b) ... END."""
    if not isinstance(tree, tuple):
        return tree
    items, node = [], tree[0]  # tree = (node, END)
    while isinstance(node, tuple) and not (isinstance(node[0], str) and node[0].startswith("[")):
        items.append(value_of(node[1]))
        node = node[0]
    operator, first = node
    values = [value_of(first), *reversed(items)]
    return {
        "[MIN": min,
        "[MAX": max,
        "[SM": lambda v: sum(v) % 10,
        "[MED": lambda v: int(statistics.median(v)),
    }[operator](values)


def unparse(rows: list[tuple[int, int, int, int]]) -> str:
    """Post-order rows back to the bracketed string (root = the last row)."""

    def text(i: int) -> str:
        token, left, right, _ = rows[i]
        return VOCABULARY[token] if left < 0 else f"( {text(left)} {text(right)} )"

    return text(len(rows) - 1)


def test_known_values():
    assert evaluate(["(", "(", "(", "[MAX", "2", ")", "9", ")", "]", ")"]) == 9
    assert evaluate(["[MED", "1", "2", "3", "4", "]"]) == 2  # int(2.5), as the published code
    assert evaluate(["[SM", "9", "8", "[MIN", "7", "3", "]", "]"]) == 0
    rows = parse("( ( ( [MAX 2 ) 9 ) ] )", "x")
    assert [VOCABULARY[t] for t, left, _, _ in rows if left < 0] == ["[MAX", "2", "9", "]"]
    assert rows[-1][3] == 3 and max(r[3] for r in rows) == 3  # the root is the deepest


def test_generated_trees_parse_back_and_evaluate_like_an_independent_evaluator():
    rng = random.Random(3)
    for _ in range(300):
        tree = generate_tree(rng, 1, 6, 5)
        if not isinstance(tree, tuple):
            continue
        text = to_string(tree)
        assert evaluate(text.split()) == value_of(tree)
        rows = parse(text, "generated")
        assert unparse(rows) == text
        for token, left, right, level in rows:  # children before parents, levels consistent
            if left >= 0:
                assert level == 1 + max(rows[left][3], rows[right][3]) and token == 1


def test_generation_is_deterministic_unique_and_capped():
    first = generate(200, seed=5, max_depth=6, max_args=5, max_length=40)
    assert first == generate(200, seed=5, max_depth=6, max_args=5, max_length=40)
    assert first != generate(200, seed=6, max_depth=6, max_args=5, max_length=40)
    assert len(set(first)) == 200 and all(len(t.split()) <= 40 for t in first)


def write_release(folder, examples: dict[str, list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train_d20s.tsv"), ("test", "test_d20s.tsv")):
        lines = [f"{evaluate(t.split())}\t{t}" for t in examples[split]]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_release_files_are_read_with_a_seeded_validation_split(tmp_path):
    texts = generate(120, seed=1, max_depth=6, max_args=5, max_length=60)
    write_release(tmp_path, {"train": texts[:100], "test": texts[100:]})
    data = ListOpsDataModule(data_dir=str(tmp_path), val_fraction=0.1, batch_size=8)
    data.setup()
    assert [len(data.examples[s]) for s in ("train", "val", "test")] == [90, 10, 20]
    assert sorted(t for _, t in data.examples["train"] + data.examples["val"]) == sorted(
        texts[:100]
    )
    trees, labels = data.splits["test"]
    for i, text in enumerate(texts[100:]):
        rows = [tuple(r) for r in trees[i].tolist() if r[0] != 0]
        assert unparse(rows) == text and labels[i] == evaluate(text.split())
    assert data.spec.inputs == "tree" and data.spec.input_shape[1] == 4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("7\t( ( [MAX 2 ) 9 ) ] )", "line 2: malformed bracketing"),
        ("7\t( ( ( [MAX 2 ) 9 ) ] ", "line 2: malformed bracketing"),
        ("7\t( ( ( [MAX 2 ) x ) ] )", "line 2: unknown token 'x'"),
        ("12\t( ( ( [MAX 2 ) 9 ) ] )", "line 2: expected 'label<TAB>sequence'"),
        ("3\t( ( ( [MAX 2 ) 9 ) ] )", "line 2: the label 3 is not the expression's value"),
    ],
    ids=["unmatched-close", "unclosed", "unknown-token", "bad-label", "wrong-label"],
)
def test_a_malformed_line_is_named_in_one_line(make_config, tmp_path, line, message):
    good = "9\t( ( ( [MAX 2 ) 9 ) ] )"
    (tmp_path / "train_d20s.tsv").write_text(f"{good}\n{line}\n")
    (tmp_path / "test_d20s.tsv").write_text(f"{good}\n")
    with pytest.raises(ConfigError, match=message) as raised:
        build_run(make_config("data=listops", "model=lstm", f"data.data_dir={tmp_path}"))
    assert "\n" not in str(raised.value) and "train_d20s.tsv" in str(raised.value)


def test_an_empty_or_missing_release_file_is_one_line(make_config, tmp_path):
    (tmp_path / "train_d20s.tsv").write_text("")
    (tmp_path / "test_d20s.tsv").write_text("9\t( ( ( [MAX 2 ) 9 ) ] )\n")
    with pytest.raises(ConfigError, match="train_d20s.tsv holds no examples"):
        build_run(make_config("data=listops", "model=lstm", f"data.data_dir={tmp_path}"))
    (tmp_path / "train_d20s.tsv").unlink()
    with pytest.raises(ConfigError, match="ListOps release file missing: .*train_d20s.tsv"):
        build_run(make_config("data=listops", "model=lstm", f"data.data_dir={tmp_path}"))


def test_sequence_models_get_the_same_examples_as_tokens(make_config):
    config = make_config(
        "data=listops", "model=lstm", "data.num_train=50", "data.num_val=10", "data.num_test=10"
    )
    datamodule, model, _ = build_run(config)
    spec = datamodule.spec
    assert spec.inputs == "tokens" and spec.vocab_size == len(VOCABULARY)
    ids = datamodule.splits["train"][0]
    for row, (label, text) in zip(ids, datamodule.examples["train"]):
        tokens = [VOCABULARY[i] for i in row.tolist() if i]
        assert " ".join(tokens) == text and evaluate(tokens) == label
    assert model(ids[:3]).shape == (3, 10)
    assert torch.equal(ids[:, -1], torch.full_like(ids[:, -1], 2))  # left-padded: ends in ")"


@pytest.mark.slow
def test_the_comparison_sweep_runs_tree_and_sequence_models_on_the_same_examples(tmp_path):
    logs = tmp_path / "logs"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            "data=listops",
            "model=treelstm,treernn,lstm,gpt",
            "data.num_train=256",
            "data.num_val=64",
            "data.num_test=64",
            "data.max_depth=4",
            "trainer.max_epochs=1",
            f"paths.log_dir={logs}",
            f"paths.data_dir={tmp_path / 'data'}",
            "~callbacks.progress_bar",
            "+trainer.enable_progress_bar=false",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if " on listops: " in line]
    assert [line.split(" on ")[0] for line in lines] == [
        "treelstm (TreeLSTM)",
        "treernn (TreeRNN)",
        "lstm (RecurrentNet)",
        "gpt (GPT)",
    ]
    assert all("test/acc" in line for line in lines)


@pytest.mark.slow
def test_a_tree_lstm_learns_listops(make_config):
    metrics = train(
        make_config(
            "data=listops",
            "model=treelstm",
            "data.num_train=3000",
            "data.num_val=300",
            "data.num_test=300",
            "data.max_depth=5",
            "trainer.max_epochs=6",
            "optimizer.lr=0.003",
        )
    )
    assert metrics["test/acc"] >= 0.5  # ten classes, the most frequent about 12 %
