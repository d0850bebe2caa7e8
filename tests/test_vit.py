"""Vision Transformer specifics: patch grid, options, attention, and a raw training loop.

The generic tests over every conf/model/*.yaml live in test_models.py; these use only the net.
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from zoo.nets.vit import ViT, adapted_patch_size

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def make(input_shape=(1, 8, 8), num_outputs: int = 10, **options) -> ViT:
    torch.manual_seed(0)
    return ViT(input_shape, num_outputs, **options)


def shuffle_patches(images: torch.Tensor, patch: int, order: torch.Tensor) -> torch.Tensor:
    """Rearrange the patch x patch tiles of (B, C, H, W) images into row-major `order`."""
    batch, channels, height, width = images.shape
    gh, gw = height // patch, width // patch
    tiles = images.reshape(batch, channels, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(batch, gh * gw, channels, patch, patch)[:, order]
    tiles = tiles.reshape(batch, gh, gw, channels, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return tiles.reshape(batch, channels, height, width)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_output_shape(shape, pool):
    model = make(shape, 7, pool=pool).eval()
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("shape", "patch"),
    [
        ((1, 8, 8), 2),
        ((1, 28, 28), 4),
        ((3, 32, 32), 4),
        ((1, 16, 16), 4),
        ((1, 12, 8), 2),
        ((1, 6, 6), 1),
        ((1, 7, 7), 1),
        ((1, 1, 1), 1),
    ],
)
def test_adapted_patch_size(shape, patch):
    assert adapted_patch_size(*shape[1:]) == patch
    model = make(shape)
    assert model.patch_size == patch
    assert model.grid == (shape[1] // patch, shape[2] // patch)


@pytest.mark.parametrize(
    ("shape", "patch", "divisors"),
    [
        ((1, 8, 8), 3, [1, 2, 4, 8]),
        ((1, 28, 28), 8, [1, 2, 4, 7, 14, 28]),
        ((3, 12, 8), 3, [1, 2, 4]),
    ],
)
def test_bad_patch_size_is_one_clear_line(shape, patch, divisors):
    with pytest.raises(ValueError) as error:
        ViT(shape, 10, patch_size=patch)
    size = f"{shape[1]}x{shape[2]}"
    assert str(error.value) == (
        f"model.patch_size {patch} does not divide the {size} image; choose one of {divisors}"
    )


def test_width_not_divisible_by_heads_is_one_clear_line():
    with pytest.raises(ValueError) as error:
        ViT((1, 8, 8), 10, width=30, heads=4)
    message = str(error.value)
    assert message.startswith("model.width 30") and "model.heads 4" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("options", "start"),
    [
        ({"depth": 0}, "model.depth"),
        ({"width": 0}, "model.width"),
        ({"heads": 0}, "model.heads"),
        ({"patch_size": 0}, "model.patch_size"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"mlp_ratio": 0}, "model.mlp_ratio"),
        ({"pool": "max"}, "model.pool"),
        ({"num_outputs": 0}, "model.num_outputs"),
    ],
)
def test_bad_options_are_one_clear_line(options, start):
    options = {"input_shape": (1, 8, 8), "num_outputs": 10, **options}
    with pytest.raises(ValueError) as error:
        ViT(**options)
    assert str(error.value).startswith(start) and "\n" not in str(error.value)


def test_needs_images():
    with pytest.raises(ValueError, match=r"^ViT needs images"):
        ViT((64,), 10)


@pytest.mark.parametrize(
    ("shape", "options", "patches"),
    [
        ((1, 8, 8), {}, 16),
        ((1, 8, 8), {"patch_size": 4}, 4),
        ((1, 8, 8), {"patch_size": 1}, 64),
        ((1, 28, 28), {}, 49),
        ((1, 28, 28), {"patch_size": 7}, 16),
        ((3, 32, 32), {}, 64),
        ((1, 12, 8), {}, 24),
    ],
)
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_token_count_matches_patch_grid(shape, options, patches, pool):
    model = make(shape, width=32, heads=2, pool=pool, **options)
    assert model.num_patches == patches
    extra = 1 if pool == "cls" else 0
    assert model.pos_embed.shape == (1, extra + patches, 32)
    if pool == "cls":
        assert model.cls_token.shape == (1, 1, 32)
    else:
        assert model.cls_token is None
    assert model.tokens(torch.randn(2, *shape)).shape == (2, extra + patches, 32)


def test_blocks_keep_their_biases():
    names = [name for name, _ in make(depth=1).named_parameters() if name.endswith("bias")]
    assert len(names) == 6 + 3  # 2 LayerNorms, qkv, proj, 2 MLP layers; patch embed, norm, head


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_gradients_reach_every_parameter(pool):
    model = make((3, 8, 8), 5, pool=pool, depth=2)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(model(x), y).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_attention_calls_sdpa_with_dropout_only_in_training(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("dropout_p", 0.0))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = make(depth=3, dropout=0.25)
    x = torch.randn(2, 1, 8, 8)
    model.train()(x)
    assert calls == [0.25] * 3
    calls.clear()
    with torch.no_grad():
        model.eval()(x)
    assert calls == [0.0] * 3


def test_attention_matches_explicit_softmax():
    model = make(width=32, heads=4, dropout=0.0).eval()
    attention = model.blocks[0].attention
    x = torch.randn(2, 5, 32)
    q, k, v = attention.qkv(x).chunk(3, dim=-1)
    heads = [slice(h * 8, (h + 1) * 8) for h in range(4)]
    outputs = [
        torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 8**0.5, dim=-1) @ v[..., s]
        for s in heads
    ]
    expected = attention.proj(torch.cat(outputs, dim=-1))
    torch.testing.assert_close(attention(x), expected, rtol=1e-5, atol=1e-5)


def test_blocks_are_permutation_equivariant():
    model = make(width=32, heads=4).eval()
    tokens = torch.randn(2, 16, 32)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(
            model.blocks(tokens[:, order]), model.blocks(tokens)[:, order], rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_without_positions_patch_order_does_not_matter(pool):
    """With zeroed position embeddings the only order information is gone: outputs match."""
    model = make((1, 8, 8), pool=pool).eval()
    images = torch.randn(3, 1, 8, 8)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(2))
    shuffled = shuffle_patches(images, model.patch_size, order)
    assert not torch.equal(shuffled, images)
    with torch.no_grad():
        assert not torch.allclose(model(shuffled), model(images), atol=1e-4)  # positions matter
        model.pos_embed.zero_()
        torch.testing.assert_close(model(shuffled), model(images), rtol=1e-4, atol=1e-5)


def test_eval_is_deterministic_and_train_uses_dropout():
    model = make(dropout=0.5)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), model(x), rtol=0, atol=0)
        assert not torch.equal(model.train()(x), model(x))


@pytest.mark.slow
def test_learns_digits_in_a_raw_loop():
    """Adam, 300 steps of 64 on 80% of sklearn's digits: >= 0.90 on the held-out 20%."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_x, test_x, train_y, test_y = train_test_split(
        digits.images, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    train_x = torch.tensor(train_x, dtype=torch.float32).unsqueeze(1)
    test_x = torch.tensor(test_x, dtype=torch.float32).unsqueeze(1)
    mean, std = train_x.mean(), train_x.std()
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    train_y, test_y = torch.tensor(train_y), torch.tensor(test_y)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        model = make((1, 8, 8), 10)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(300):
            batch = torch.randint(len(train_y), (64,), generator=generator)
            loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert accuracy >= 0.90, f"test accuracy {accuracy:.3f} after 300 steps ({seconds:.1f} s)"
