"""Text data and the language-model task: vocabulary, splits, windows, bad files, training,
TensorBoard's TEXT tab, the reference points and generation from a checkpoint."""

from __future__ import annotations

import codecs
import math
import subprocess
import sys
import this
from pathlib import Path

import pytest
import torch
from conftest import REPO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from zoo.cli import sample
from zoo.data import TextDataModule
from zoo.data.text import UNKNOWN, RandomWindows, Vocabulary, windows
from zoo.errors import ConfigError
from zoo.registry import models_for
from zoo.run.training import train

ZEN = codecs.decode(this.s, "rot13")  # the Zen of Python: text that ships with Python


@pytest.fixture
def zen_file(tmp_path: Path) -> Path:
    path = tmp_path / "zen.txt"
    path.write_text((ZEN + "\n") * 40, encoding="utf-8")
    return path


def test_vocabulary_round_trip_and_unknown_characters():
    vocabulary = Vocabulary.of("hello, wörld")
    ids = vocabulary.encode("wörld, hello")
    assert vocabulary.decode(ids) == "wörld, hello"
    assert ids.dtype == torch.long and ids.min() >= 1
    assert vocabulary.encode("hé€")[1:].tolist() == [0, 0]  # never seen in training
    assert vocabulary.decode(vocabulary.encode("h€")) == "h" + UNKNOWN
    assert len(vocabulary) == len(set("hello, wörld")) + 1


def test_splits_are_contiguous_and_windows_predict_the_next_character(zen_file):
    data = TextDataModule(path=str(zen_file), block_size=16, batch_size=4, steps_per_epoch=3)
    data.setup()
    text = zen_file.read_text()
    assert "".join(data.texts[s] for s in ("train", "val", "test")) == text
    assert len(data.texts["test"]) == round(len(text) * 0.05)
    spec = data.spec
    assert (spec.input_shape, spec.inputs, spec.kind) == ((16,), "tokens", "language_model")
    assert spec.vocab_size == spec.num_outputs == len(spec.vocabulary) and spec.per_position
    inputs, targets = windows(data.ids["val"], 16)
    assert inputs.shape[1] == 16 and torch.equal(inputs[:, 1:], targets[:, :-1])
    batches = list(data.train_dataloader())
    assert len(batches) == 3
    for x, y in batches:
        assert x.shape == y.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])


def test_random_windows_differ_by_epoch_and_seed():
    ids = torch.arange(1000)
    loader = RandomWindows(ids, block_size=8, batch_size=4, steps=2, seed=0)
    first, second = [torch.cat([x for x, _ in loader]) for _ in range(2)]
    assert not torch.equal(first, second)
    again = torch.cat([x for x, _ in RandomWindows(ids, 8, 4, 2, seed=0)])
    other = torch.cat([x for x, _ in RandomWindows(ids, 8, 4, 2, seed=1)])
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_default_corpus_is_pythons_own_source_and_deterministic():
    data, again = TextDataModule(max_chars=50_000), TextDataModule(max_chars=50_000)
    data.setup(), again.setup()
    assert data.texts == again.texts
    assert sum(len(t) for t in data.texts.values()) == 50_000
    assert "import" in data.texts["train"]


def test_a_folder_skips_binary_files(tmp_path, zen_file):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text(ZEN * 10)
    (folder / "b.bin").write_bytes(bytes(range(256)) * 10)
    data = TextDataModule(path=str(folder), block_size=16)
    data.setup()
    assert "".join(data.texts.values()) == ZEN * 10


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            *args,
            f"paths.log_dir={cwd / 'logs'}",
            "~callbacks.progress_bar",
            "+trainer.enable_progress_bar=false",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        (b"", [], "is empty"),
        (bytes(range(256)) * 4, [], "is not UTF-8 text"),
        (b"\x00\x01binary\x00" * 50, [], "is not UTF-8 text"),
        (ZEN.encode(), ["data.block_size=500"], "data.block_size 500 does not fit the val split"),
        (ZEN.encode(), ["data.block_size=0"], "data.block_size must be an integer >= 1"),
    ],
    ids=["empty", "binary", "nul-bytes", "block-too-long", "block-zero"],
)
def test_bad_text_fails_before_training_with_one_line(tmp_path, content, options, message):
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    result = cli("data=text", "model=lstm", f"data.path={path}", *options, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not list(tmp_path.rglob("*.ckpt"))


def test_a_missing_path_is_one_line(make_config, tmp_path):
    with pytest.raises(ConfigError, match="data.path .*nothing.txt does not exist"):
        train(make_config("data=text", "model=lstm", f"data.path={tmp_path / 'nothing.txt'}"))


def test_models_that_cannot_read_tokens_are_refused(make_config, zen_file):
    with pytest.raises(ConfigError, match="model=cnn|ConvNet takes images .* token sequences"):
        train(make_config("data=text", "model=cnn", f"data.path={zen_file}"))
    assert {"lstm", "gru", "rnn"} <= set(models_for("tokens"))


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(set(models_for("tokens")) - {"rnn"}))
def test_a_language_model_learns_and_writes_samples_and_references(
    make_config, tmp_path, zen_file, model
):
    config = make_config(
        "data=text",
        f"model={model}",
        f"data.path={zen_file}",
        "data.block_size=32",
        "data.batch_size=32",
        "data.steps_per_epoch=40",
        "trainer.max_epochs=3",
        "optimizer.lr=0.003",
        "+model.sample_length=50",
    )
    metrics = train(config)
    assert metrics["test/bpc"] == pytest.approx(metrics["test/loss"] / math.log(2), rel=1e-5)
    assert metrics["reference/xz_bpc"] >= 0 and metrics["reference/unigram_bpc"] > 3
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss_step", "val/loss", "val/bpc", "test/bpc", "reference/xz_bpc"} <= scalars
    val = [e.value for e in events.Scalars("val/bpc")]
    assert val[-1] < 0.7 * math.log2(len(set(zen_file.read_text())))  # well below uniform
    samples = events.Tensors("samples/text_summary")
    assert len(samples) == 3  # one per validation epoch, none for the sanity check
    text = samples[-1].tensor_proto.string_val[0].decode()
    assert len(text.replace("\n", "").replace("    ", "")) >= 40

    checkpoint = next((tmp_path / "checkpoints").glob("best-*.ckpt"))
    model_ = sample.load(checkpoint)
    first = model_.generate("Beautiful ", length=60, seed=3)
    assert len(first) == 60 and first == model_.generate("Beautiful ", length=60, seed=3)
    assert first != model_.generate("Beautiful ", length=60, seed=4)
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "sample.py"),
            f"ckpt_path={checkpoint}",
            "prompt=Beautiful ",
            "length=60",
            "seed=3",
            "top_k=5",
            f"out={tmp_path / 'text.txt'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "text.txt").read_text(encoding="utf-8")) == 60
