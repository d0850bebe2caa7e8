"""ListOps: the generator, the release-format parser and evaluator, bad files, and both forms
(trees for tree networks, tokens for sequence networks)."""

from __future__ import annotations

import itertools
import random
import signal
import statistics
import subprocess
import sys
import time

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
        ("7\t( ( ( [MAX 2 ) 9 ) ] ) )", "line 2: malformed bracketing"),
        ("7\t( ( [MAX 2 ) 9 ] )", "line 2: malformed bracketing \\(3 children"),
        ("7\t( ( ( [MAX 2 ) 10 ) ] )", "line 2: unknown token '10'"),
        ("7\t( ( ( [max 2 ) 9 ) ] )", "line 2: unknown token '\\[max'"),
        ("7\t( ( ( [MAX 2 ) <pad> ) ] )", "line 2: unknown token '<pad>'"),
        ("0\t( [MIN ] )", "line 2: a list \\(\\[MIN \\]\\) without arguments"),
        ("0\t( ( [SM ( [MAX ] ) ) ] )", "line 2: a list \\(\\[MAX \\]\\) without arguments"),
        ("0\t( 2 ] )", "line 2: '\\]' after the end"),
        ("0\t( ] 2 )", "line 2: a '\\]' closes no list"),
        ("0\t( ( [MIN 2 ) 3 )", "line 2: 1 list\\(s\\) not closed"),
        ("0\t( 2 3 )", "line 2: '3' after the end"),
        ("12\t( ( ( [MAX 2 ) 9 ) ] )", "line 2: expected 'label<TAB>sequence'"),
        ("-1\t( ( ( [MAX 2 ) 9 ) ] )", "line 2: expected 'label<TAB>sequence'"),
        ("x\t( ( ( [MAX 2 ) 9 ) ] )", "line 2: expected 'label<TAB>sequence'"),
        ("( ( ( [MAX 2 ) 9 ) ] )", "line 2: expected 'label<TAB>sequence'"),
        ("3\t( ( ( [MAX 2 ) 9 ) ] )", "line 2: the label 3 is not the expression's value"),
    ],
    ids=[
        "unmatched-close",
        "unclosed",
        "unknown-token",
        "extra-close",
        "three-children",
        "two-digit-number",
        "lower-case-operator",
        "pad-token",
        "empty-list",
        "nested-empty-list",
        "digit-then-end",
        "end-first",
        "unclosed-list",
        "digits-without-operator",
        "label-too-large",
        "negative-label",
        "letter-label",
        "no-tab",
        "wrong-label",
    ],
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
            "data.distribution=easy",
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
            "data.distribution=easy",
            "data.max_depth=5",
            "trainer.max_epochs=6",
            "optimizer.lr=0.003",
        )
    )
    assert metrics["test/acc"] >= 0.5  # ten classes, the most frequent about 12 %


def nesting(text: str) -> int:
    depth = deepest = 0
    for token in text.split():
        depth += token.startswith("[")
        depth -= token == "]"
        deepest = max(deepest, depth)
    return deepest


def test_the_default_distribution_matches_the_release():
    """The released test_d20s.tsv (10,000 lines; nyu-mll/spinn, listops-release), measured: lists
    nested 1-19 deep (median 3, 3.2 % at 19), 1-2,815 tokens (median 46, 90th percentile 316)."""
    data = ListOpsDataModule(num_train=8000, num_val=1000, num_test=1000)
    texts = [text for pairs in data.read_examples().values() for _, text in pairs]
    depths, lengths = [nesting(t) for t in texts], [len(t.split()) for t in texts]
    assert max(depths) == 19 and statistics.median(depths) == 3
    assert 0.025 < depths.count(19) / len(depths) < 0.04
    assert 40 <= statistics.median(lengths) <= 52
    assert 280 <= statistics.quantiles(lengths, n=10)[-1] <= 360
    assert 1500 <= max(lengths) <= 4000
    easy = ListOpsDataModule(distribution="easy", num_train=500, num_val=50, num_test=50)
    texts = [text for pairs in easy.read_examples().values() for _, text in pairs]
    assert max(map(nesting, texts)) <= 7 and max(len(t.split()) for t in texts) <= 100
    with pytest.raises(ValueError, match="data.distribution must be one of"):
        ListOpsDataModule(distribution="hard")


def deep(depth: int) -> str:
    """A list nested `depth` deep: [MAX 1 [MAX 1 ... ] ]."""
    text = "1"
    for _ in range(depth):
        text = f"( ( ( [MAX 1 ) {text} ) ] )"
    return text


@pytest.mark.parametrize(
    ("sequence", "options", "message"),
    [
        (deep(21), [], "lists nested 21 deep, more than data.max_depth=20"),
        (deep(3000), [], "27001 tokens, more than data.max_length=4000"),
        (deep(6), ["data.max_depth=5"], "lists nested 6 deep, more than data.max_depth=5"),
        (deep(600), [], "5401 tokens, more than data.max_length=4000"),
        (deep(20), ["data.max_length=50"], "181 tokens, more than data.max_length=50"),
    ],
    ids=["depth-21", "depth-3000", "depth-option", "tokens", "tokens-option"],
)
def test_what_one_line_may_cost_is_bounded_and_named(
    make_config, tmp_path, sequence, options, message
):
    good = "9\t( ( ( [MAX 2 ) 9 ) ] )"
    (tmp_path / "train_d20s.tsv").write_text(f"{good}\n{good}\n")
    (tmp_path / "test_d20s.tsv").write_text(f"{good}\n1\t{sequence}\n")
    config = make_config("data=listops", "model=treelstm", f"data.data_dir={tmp_path}", *options)
    with pytest.raises(ConfigError, match=message) as raised:
        build_run(config)
    assert "\n" not in str(raised.value) and "test_d20s.tsv, line 2" in str(raised.value)


def test_the_release_limits_admit_depth_20_and_raised_limits_admit_more(make_config, tmp_path):
    good = "9\t( ( ( [MAX 2 ) 9 ) ] )"
    (tmp_path / "train_d20s.tsv").write_text(f"{good}\n{good}\n1\t{deep(20)}\n")
    (tmp_path / "test_d20s.tsv").write_text(f"{good}\n1\t{deep(30)}\n")
    with pytest.raises(ConfigError, match="test_d20s.tsv, line 2: lists nested 30 deep"):
        build_run(make_config("data=listops", "model=treelstm", f"data.data_dir={tmp_path}"))
    datamodule, model, _ = build_run(
        make_config(
            "data=listops", "model=treelstm", f"data.data_dir={tmp_path}", "data.max_depth=30"
        )
    )
    x, y = next(iter(datamodule.test_dataloader()))
    assert model(x).shape == (len(y), 10)


def levels_of(batches) -> list[int]:
    return [int(x[..., 3].max()) for x, _ in batches]


def test_batches_hold_trees_of_similar_depth_padded_to_their_own_widest():
    data = ListOpsDataModule(num_train=3000, num_val=10, num_test=10, batch_size=32)
    data.setup()
    loader = data.train_dataloader()
    batches = list(loader)
    examples, targets = data.items["train"]
    assert len(batches) == len(loader) == 94
    # every example once; each batch as wide as its widest member, no wider
    seen = torch.cat([y for _, y in batches])
    assert len(seen) == 3000 and sorted(seen.tolist()) == sorted(targets.tolist())
    for x, _ in batches:
        real = (x[..., 3] >= 0).sum(1)
        assert x.shape[1] == int(real.max())
    # a batch's levels are close to its members': far fewer than random batches of the same size
    random = torch.randperm(3000, generator=torch.Generator().manual_seed(0)).split(32)
    random_levels = [int(max(examples[i][-1, 3] for i in b.tolist())) for b in random]
    assert sum(levels_of(batches)) < 0.6 * sum(random_levels)
    # a new epoch, a new order of batches
    assert levels_of(loader) != levels_of(batches)


def test_the_epoch_order_is_deterministic_and_resumes_mid_epoch():
    data = ListOpsDataModule(
        distribution="easy", num_train=500, num_val=10, num_test=10, batch_size=16
    )
    data.setup()
    first, second = data.train_dataloader(), data.train_dataloader()
    for loader in (first, second):
        loader.seed = 7
    epoch0 = [y for _, y in first]
    assert [y.tolist() for y in epoch0] == [y.tolist() for _, y in second]
    served = []
    for i, (_, y) in enumerate(first):  # epoch 1, interrupted after 5 batches
        served.append(y)
        if i == 4:
            break
    state = first.state_dict()
    assert state == {"epoch": 1, "position": 5}
    resumed = data.train_dataloader()
    resumed.seed = 7
    resumed.load_state_dict(state)
    rest = [y for _, y in resumed]
    whole = [y for _, y in second]  # epoch 1 uninterrupted
    assert [y.tolist() for y in served + rest] == [y.tolist() for y in whole]
    assert resumed.state_dict() == {"epoch": 2, "position": 0}


def test_sequence_models_read_the_longest_examples_in_length_buckets(make_config):
    config = make_config(
        "data=listops", "model=lstm", "data.num_train=300", "data.num_val=10", "data.num_test=10"
    )
    datamodule, model, _ = build_run(config)
    batches = list(datamodule.train_dataloader())
    widths = sorted(x.shape[1] for x, _ in batches)
    assert widths[-1] == max(len(ids) for ids in datamodule.items["train"][0]) > 500
    assert widths[0] < 100  # short examples are not padded to the longest
    x, y = max(batches, key=lambda batch: batch[0].shape[1])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)


def test_a_loader_left_early_serves_everything_next_time():
    data = ListOpsDataModule(distribution="easy", num_train=50, num_val=100, num_test=10)
    data.batch_size = 16
    data.setup()
    loader = data.val_dataloader()
    for i, _ in enumerate(loader):  # as Lightning's sanity check: two batches, then stop
        if i == 1:
            break
    assert [len(y) for _, y in loader] == [16] * 6 + [4]


def test_epochs_read_as_lightning_reads_them_are_all_whole():
    """Lightning takes len(loader) batches and never asks for the end of the iterator; each
    epoch is still whole and new, and a finished epoch's state is the next one's start."""
    data = ListOpsDataModule(distribution="easy", num_train=100, num_val=40, num_test=10)
    data.batch_size = 16
    data.setup()
    train, val = data.train_dataloader(), data.val_dataloader()
    first = [y for _, y in itertools.islice(iter(val), 2)]  # the sanity check
    assert len(first) == 2
    orders = []
    for epoch in range(4):
        served = [y for _, y in itertools.islice(iter(train), len(train))]
        assert len(served) == len(train) == 7
        assert sorted(torch.cat(served).tolist()) == sorted(data.items["train"][1].tolist())
        assert train.state_dict() == {"epoch": epoch + 1, "position": 0}
        orders.append(torch.cat(served).tolist())
        assert len([y for _, y in itertools.islice(iter(val), len(val))]) == len(val) == 3
    assert len({tuple(order) for order in orders}) == 4
    resumed = data.train_dataloader()
    resumed.seed = train.seed
    resumed.load_state_dict(train.state_dict())
    assert len(list(resumed)) == 7


def test_sigterm_while_the_data_is_generated_ends_the_run_promptly(tmp_path):
    """Generating 300,000 distinct examples takes minutes; SIGTERM during it ends the run."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-X",
            "importtime",  # stderr names each module as its import ends
            str(REPO / "train.py"),
            "model=treelstm",
            "data=listops",
            "data.num_train=300000",
            "threads=1",
            f"paths.log_dir={tmp_path}",
            f"paths.data_dir={tmp_path}",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    for line in process.stderr:  # train.py's imports are done: configuration, then the data
        if line.rstrip().endswith(" zoo.run.training"):  # importtime indents nested imports
            break
    time.sleep(10)  # Hydra composes the configuration; the generator runs for minutes after
    assert process.poll() is None
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.stderr.close()
    assert process.wait(timeout=30) != 0
    assert time.monotonic() - sent < 30


def test_sequence_batches_keep_to_the_token_budget_with_the_same_count_every_epoch():
    data = ListOpsDataModule(
        inputs="tokens", num_train=400, num_val=10, num_test=10, batch_size=16, batch_tokens=2048
    )
    data.setup()
    loader = data.train_dataloader()
    lengths = [len(ids) for ids in data.items["train"][0]]
    assert max(lengths) > 2048  # one example over the budget comes alone
    epochs = []
    for _ in range(2):
        batches = list(itertools.islice(iter(loader), len(loader)))
        assert len(batches) == len(loader)
        for x, y in batches:
            assert len(y) <= 16 and (x.numel() <= 2048 or len(y) == 1)
        served = torch.cat([y for _, y in batches])
        assert sorted(served.tolist()) == sorted(data.items["train"][1].tolist())
        epochs.append([y.tolist() for _, y in batches])
    assert epochs[0] != epochs[1]
    assert max(len(y) for _, y in batches) == 16  # short examples still in full batches
    with pytest.raises(ValueError, match=r"data.batch_tokens must be an integer >= 1, got 0"):
        ListOpsDataModule(batch_tokens=0)


@pytest.mark.parametrize("model", ["treelstm", "lstm"])
def test_the_listops_experiment_sets_lr_and_clipping_for_every_model(make_config, model):
    config = make_config(
        "experiment=listops",
        f"model={model}",
        "data.distribution=easy",
        "data.num_train=64",
        "data.num_val=16",
        "data.num_test=16",
    )
    datamodule, task, trainer = build_run(config)
    assert datamodule.inputs == ("tree" if model == "treelstm" else "tokens")
    optimizers, (scheduler,) = task.configure_optimizers()
    assert optimizers[0].param_groups[0]["lr"] == 0.003
    assert type(scheduler["scheduler"]).__name__ == "CosineAnnealingLR"
    assert trainer.gradient_clip_val == 1.0 and trainer.max_epochs == 30
