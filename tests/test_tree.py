"""Recursive networks over binary trees (TreeRNN, TreeLSTM): level-by-level batching.

Shapes, agreement with the per-node recursive reference on random trees of different sizes,
gradients, padding, a raw PyTorch loop, and refusal of inputs that are not trees. The generic
tests over every conf/model/*.yaml live in test_models.py; these use only the networks.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from zoo.nets import TreeLSTM, TreeRNN
from zoo.nets.tree import recursive_forward

VOCAB = 12
NETS = [TreeRNN, TreeLSTM]


def tree_rows(rng: random.Random, leaves: int) -> list[list[int]]:
    """One random binary tree with `leaves` leaves as post-order [token, left, right, level]."""
    rows: list[list[int]] = []

    def build(count: int) -> tuple[int, int]:
        if count == 1:
            rows.append([rng.randrange(1, VOCAB), -1, -1, 0])
            return len(rows) - 1, 0
        split = rng.randrange(1, count)
        (left, left_level), (right, right_level) = build(split), build(count - split)
        level = 1 + max(left_level, right_level)
        rows.append([1, left, right, level])
        return len(rows) - 1, level

    build(leaves)
    return rows


def trees(sizes: list[int], nodes: int | None = None, seed: int = 0) -> torch.Tensor:
    """A (batch, nodes, 4) batch, one tree per size (leaves), padded with [0, -1, -1, -1] rows."""
    rng = random.Random(seed)
    examples = [tree_rows(rng, size) for size in sizes]
    nodes = nodes or max(map(len, examples))
    x = torch.tensor([0, -1, -1, -1]).repeat(len(sizes), nodes, 1)
    for i, rows in enumerate(examples):
        x[i, : len(rows)] = torch.tensor(rows)
    return x


def make(cls: type, nodes: int, num_outputs: int = 5, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return cls((nodes, 4), num_outputs, VOCAB, **{"hidden_size": 16, **options})


@pytest.mark.parametrize("cls", NETS)
def test_output_shape(cls):
    x = trees([1, 3, 7, 2])
    assert make(cls, x.shape[1])(x).shape == (4, 5)


@pytest.mark.parametrize("cls", NETS)
def test_level_batching_matches_the_recursive_reference(cls):
    x = trees([1, 2, 5, 9, 16, 3, 12, 7], seed=3)  # different sizes and shapes, all padded
    net = make(cls, x.shape[1]).double().eval()
    torch.testing.assert_close(net(x), recursive_forward(net, x), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cls", NETS)
def test_gradients_reach_every_parameter_and_the_leaves_embeddings(cls):
    x = trees([4, 6, 9], seed=1)
    net = make(cls, x.shape[1])
    net(x).square().sum().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    leaf_tokens = x[..., 0][x[..., 3] == 0].unique()
    unused = torch.ones(VOCAB, dtype=torch.bool)
    unused[leaf_tokens] = False
    grad = net.embedding.weight.grad
    assert (grad[leaf_tokens].abs().sum(1) > 0).all()
    assert (grad[unused] == 0).all()  # padding and internal nodes' tokens are not read


@pytest.mark.parametrize("cls", NETS)
def test_padding_rows_do_not_change_outputs(cls):
    x = trees([3, 8, 1, 5], seed=2)
    padded = trees([3, 8, 1, 5], nodes=x.shape[1] + 9, seed=2)
    net = make(cls, x.shape[1]).eval()
    torch.testing.assert_close(net(padded), net(x))
    torch.testing.assert_close(net(x[1:2]), net(x)[1:2])  # other trees do not matter either


@pytest.mark.parametrize("cls", NETS)
def test_raw_pytorch_loop_drives_the_loss_down(cls):
    x = trees([2, 3, 4, 5, 6, 3, 4, 2], seed=4)
    y = torch.arange(8) % 5
    net = make(cls, x.shape[1], hidden_size=32)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-2)
    first = F.cross_entropy(net(x), y).item()
    for _ in range(25):
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first


@pytest.mark.parametrize("cls", NETS)
@pytest.mark.parametrize("shape", [(10,), (10, 3), (3, 28, 28)])
def test_refuses_inputs_that_are_not_trees_in_one_line(cls, shape):
    with pytest.raises(ValueError, match=r"needs trees \(nodes, 4\)") as error:
        cls(shape, 5, VOCAB)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="needs a batch of trees") as error:
        make(cls, 10)(torch.zeros(2, 10, dtype=torch.long))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("option", "message"),
    [({"hidden_size": 0}, "hidden_size must be a positive"), ({"dropout": 1.0}, "dropout")],
)
def test_refuses_bad_options(option, message):
    with pytest.raises(ValueError, match=message):
        TreeLSTM((10, 4), 5, VOCAB, **option)
