"""Networks over token ids: the GPT and the recurrent nets with an embedding in front.

Shapes, causality (no output sees a later token), weight tying, block sizes, gradients and a raw
PyTorch loop on a tiny repeated text. The generic tests over every conf/model/*.yaml live in
test_models.py; these use only the networks.
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from zoo.nets import GPT, RecurrentNet

VOCAB = 20
STEPS = 12
CELLS = ["rnn", "lstm", "gru"]
NETS = ["gpt", *CELLS]
SMALL_GPT = {"depth": 2, "width": 32, "heads": 4}


def make(name: str, num_outputs: int = VOCAB, per_position: bool = True, **options):
    """A small token network: GPT, or RecurrentNet with `cell=name`."""
    torch.manual_seed(0)
    if name == "gpt":
        return GPT((STEPS,), num_outputs, VOCAB, per_position, **{**SMALL_GPT, **options})
    options = {"hidden_size": 24, "embedding_size": 16, **options}
    return RecurrentNet(
        (STEPS,), num_outputs, cell=name, vocab_size=VOCAB, per_position=per_position, **options
    )


def tokens(batch: int = 3, steps: int = STEPS, seed: int = 1) -> torch.Tensor:
    return torch.randint(VOCAB, (batch, steps), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("per_position", [True, False])
@pytest.mark.parametrize("num_outputs", [VOCAB, 7])
def test_output_shape(name, per_position, num_outputs):
    model = make(name, num_outputs, per_position).eval()
    out = model(tokens())
    assert out.shape == ((3, STEPS, num_outputs) if per_position else (3, num_outputs))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NETS)
def test_one_output_per_sequence_is_the_last_positions(name):
    every, last = make(name, per_position=True).eval(), make(name, per_position=False).eval()
    x = tokens()
    with torch.no_grad():
        torch.testing.assert_close(last(x), every(x)[:, -1])


@pytest.mark.parametrize("name", NETS)
def test_no_position_sees_a_later_token(name):
    """Changing token k leaves every output before k as it was and changes every one from k on."""
    model = make(name).eval()
    x = tokens(batch=2)
    with torch.no_grad():
        before = model(x)
        for k in (0, 5, STEPS - 1):
            changed = x.clone()
            changed[:, k] = (changed[:, k] + 1) % VOCAB
            after = model(changed)
            torch.testing.assert_close(after[:, :k], before[:, :k], rtol=0, atol=1e-6)
            moved = (after[:, k:] - before[:, k:]).abs().amax(dim=-1)  # (batch, STEPS - k)
            assert (moved > 1e-4).all(), (k, moved)


@pytest.mark.parametrize("name", NETS)
def test_a_prefix_gives_the_same_outputs_as_the_whole_window(name):
    model = make(name).eval()
    x = tokens()
    with torch.no_grad():
        torch.testing.assert_close(model(x[:, :5]), model(x)[:, :5], rtol=1e-5, atol=1e-6)


def test_gpt_attention_is_causal_and_drops_out_only_in_training(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append((kwargs.get("is_causal"), kwargs.get("dropout_p")))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = make("gpt", dropout=0.2)
    model.train()(tokens())
    assert calls == [(True, 0.2)] * 2
    calls.clear()
    with torch.no_grad():
        model.eval()(tokens())
    assert calls == [(True, 0.0)] * 2


def test_gpt_eval_is_deterministic_and_train_uses_dropout():
    model = make("gpt", dropout=0.5)
    x = tokens()
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), model(x), rtol=0, atol=0)
        assert not torch.equal(model.train()(x), model(x))


def test_gpt_head_is_tied_to_the_token_embedding_when_it_predicts_tokens():
    model = make("gpt")
    assert model.head.weight is model.token_embed.weight
    assert model.head.bias is None
    parameters = list(model.parameters())
    assert sum(p is model.token_embed.weight for p in parameters) == 1  # counted once
    with torch.no_grad():
        model.token_embed.weight[3].fill_(0.5)
    assert (model.head.weight[3] == 0.5).all()
    # The tie survives a state-dict round trip into a fresh model.
    fresh = GPT((STEPS,), VOCAB, VOCAB, **SMALL_GPT)
    fresh.load_state_dict(model.state_dict())
    assert fresh.head.weight is fresh.token_embed.weight
    torch.testing.assert_close(fresh.eval()(tokens()), model.eval()(tokens()), rtol=0, atol=0)


def test_gpt_head_is_its_own_when_it_predicts_something_else():
    model = make("gpt", num_outputs=7)
    assert model.head.weight.shape == (7, SMALL_GPT["width"])
    assert model.head.bias is not None
    assert model.head.weight is not model.token_embed.weight


def biases(model: torch.nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters() if name.endswith("bias")]


def test_gpt_has_no_biases_by_default_as_nanogpt():
    assert biases(make("gpt")) == []
    assert biases(make("gpt", num_outputs=7)) == ["head.bias"]  # a head of its own keeps one
    with_biases = make("gpt", bias=True)
    # Every block: 2 LayerNorms, qkv, proj, 2 MLP layers; then the final LayerNorm.
    assert len(biases(with_biases)) == 6 * SMALL_GPT["depth"] + 1
    x = tokens()
    assert with_biases(x).shape == make("gpt")(x).shape


def test_gpt_block_size_defaults_to_the_window_and_may_be_longer():
    assert make("gpt").block_size == STEPS
    model = make("gpt", block_size=STEPS + 8).eval()
    assert model.block_size == STEPS + 8 and model.pos_embed.shape[0] == STEPS + 8
    assert model(tokens(steps=STEPS + 8)).shape == (3, STEPS + 8, VOCAB)
    assert model(tokens(steps=1)).shape == (3, 1, VOCAB)


def test_gpt_block_size_shorter_than_the_window_is_one_clear_line():
    with pytest.raises(ValueError) as error:
        make("gpt", block_size=STEPS - 1)
    message = str(error.value)
    assert message.startswith(f"model.block_size {STEPS - 1} ") and "\n" not in message
    assert f"windows of {STEPS} tokens" in message


def test_gpt_input_longer_than_block_size_is_one_clear_line():
    model = make("gpt")
    with pytest.raises(ValueError) as error:
        model(tokens(steps=STEPS + 1))
    message = str(error.value)
    assert f"{STEPS + 1} tokens" in message and f"model.block_size {STEPS}" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("options", "start"),
    [
        ({"depth": 0}, "model.depth"),
        ({"width": 0}, "model.width"),
        ({"heads": 0}, "model.heads"),
        ({"width": 30, "heads": 4}, "model.width 30 must be divisible by model.heads 4"),
        ({"mlp_ratio": 0}, "model.mlp_ratio"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"block_size": 0}, "model.block_size"),
        ({"vocab_size": 0}, "model.vocab_size"),
        ({"num_outputs": 0}, "model.num_outputs"),
        ({"input_shape": (1, 8, 8)}, "GPT needs token ids (time steps,), got shape (1, 8, 8)"),
        ({"input_shape": (6, 3)}, "GPT needs token ids"),
    ],
)
def test_gpt_bad_options_are_one_clear_line(options, start):
    options = {"input_shape": (STEPS,), "num_outputs": VOCAB, "vocab_size": VOCAB, **options}
    with pytest.raises(ValueError) as error:
        GPT(**options)
    assert str(error.value).startswith(start) and "\n" not in str(error.value)


@pytest.mark.parametrize("cell", CELLS)
def test_bidirectional_with_one_output_per_position_is_one_clear_line(cell):
    with pytest.raises(ValueError) as error:
        make(cell, bidirectional=True)
    message = str(error.value)
    assert message.startswith("model.bidirectional") and "\n" not in message
    assert make(cell, per_position=False, bidirectional=True)(tokens()).shape == (3, VOCAB)


@pytest.mark.parametrize(
    ("args", "start"),
    [
        ({"vocab_size": 0}, "model.vocab_size"),
        ({"vocab_size": VOCAB, "embedding_size": 0}, "model.embedding_size"),
        ({"vocab_size": VOCAB, "input_shape": (6, 3)}, "RecurrentNet needs token ids"),
        ({"input_shape": (STEPS,)}, "RecurrentNet needs a sequence"),  # ids without a vocab_size
    ],
)
def test_recurrent_token_options_are_one_clear_line(args, start):
    args = {"input_shape": (STEPS,), "num_outputs": VOCAB, **args}
    with pytest.raises(ValueError) as error:
        RecurrentNet(**args)
    assert str(error.value).startswith(start) and "\n" not in str(error.value)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("shape", [(6, 3), (1, 8, 8)])
def test_recurrent_nets_on_other_inputs_have_no_embedding(cell, shape):
    """The data's token facts at their non-token values change nothing: same keys, same outputs."""
    torch.manual_seed(0)
    plain = RecurrentNet(shape, 5, cell=cell)
    torch.manual_seed(0)
    given = RecurrentNet(shape, 5, cell=cell, vocab_size=None, per_position=False)
    assert plain.embedding is None
    assert list(given.state_dict()) == list(plain.state_dict())
    assert not any("embedding" in key for key in plain.state_dict())
    x = torch.randn(4, *shape)
    torch.testing.assert_close(given(x), plain(x), rtol=0, atol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_nets_on_sequences_can_give_one_output_per_step(cell):
    model = RecurrentNet((6, 3), 5, cell=cell, per_position=True)
    assert model(torch.randn(4, 6, 3)).shape == (4, 6, 5)


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("per_position", [True, False])
def test_gradients_reach_every_parameter(name, per_position):
    model = make(name, per_position=per_position, **({"num_layers": 2} if name in CELLS else {}))
    x = tokens(batch=8)
    out = model(x)
    targets = torch.randint(VOCAB, out.shape[:-1])
    F.cross_entropy(out.flatten(0, -2), targets.flatten()).backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"no gradient reached {missing}"


TEXT = "the zoo keeps small networks; each one learns a little text. " * 30


@pytest.mark.parametrize("name", NETS)
def test_a_raw_loop_learns_a_repeated_text(name):
    """Adam on random 32-character windows of a repeated sentence: the next-token loss more than
    halves in 60 steps."""
    characters = sorted(set(TEXT))
    data = torch.tensor([characters.index(c) for c in TEXT])
    vocab, steps = len(characters), 32
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        torch.manual_seed(0)
        if name == "gpt":
            model = GPT((steps,), vocab, vocab, depth=2, width=64, heads=4, dropout=0.0)
        else:
            model = RecurrentNet((steps,), vocab, cell=name, vocab_size=vocab, per_position=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(0)
        losses = []
        for _ in range(60):
            begin = torch.randint(len(data) - steps, (16,), generator=generator)
            windows = torch.stack([data[b : b + steps + 1] for b in begin.tolist()])
            logits = model(windows[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert losses[0] == pytest.approx(torch.log(torch.tensor(vocab)).item(), rel=0.2)
    assert losses[-1] < 0.5 * losses[0], f"{losses[0]:.3f} -> {losses[-1]:.3f} in {seconds:.1f} s"


def test_sampling_text_compiles_nothing_when_the_net_is_compiled():
    from torch._dynamo.utils import counters

    from zoo.tasks.language_model import LanguageModel

    net = {"_target_": "zoo.nets.GPT", "depth": 1, "width": 16, "heads": 2}
    model = LanguageModel(net, input_shape=(8,), vocabulary="\ufffdab\n", compile=True)
    model.compile_in_place()
    counters.clear()
    text = model.generate("ab", length=12, seed=0)
    assert len(text) == 12 and set(text) <= set("\ufffdab\n")
    assert not counters["stats"]["unique_graphs"]  # every step ran eagerly
