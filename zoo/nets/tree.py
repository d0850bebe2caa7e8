"""Recursive networks over binary trees: a TreeRNN (Socher et al. 2011) and a Tree-LSTM (Tai et
al. 2015), computed level by level.

A batch of trees is one int64 tensor (batch, N, 4): per example N node rows (padded), each
`[token, left, right, level]`, in post-order (children before parents). `left` and `right` are
the children's rows (-1 for leaves and padding); `level` is 0 for leaves, 1 + the children's
largest level for internal nodes, -1 for padding; the root is the row with the largest level.
Leaves read their token's embedding; internal nodes combine their two children and ignore their
own token. A linear head reads the root's hidden state.

Level by level: a leaf's state depends only on its token, so the leaves read one table of every
token's state; then for each level 1, 2, ... all nodes of that level (across the batch) gather
their children's states in one index operation and go through the cell in one matrix product: as
many steps as the deepest tree is deep, no Python loop over trees or nodes. Between levels only
the states still needed are kept (nodes whose parent is at a later level), so a level costs its
own nodes plus those, not the whole batch (data=listops also groups trees of similar depth into a
batch). `recursive_forward` is the plain reference, one node at a time by recursion over each
tree, with the same weights (tests check they agree; bench/tree_batching.py times both).

Defaults: hidden 128 (the embedding too), no dropout; accuracies and timings: docs/experiments.md
and bench/RESULTS.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from zoo.nets.checks import check_dropout, check_positive, check_tree


class TreeNet(nn.Module):
    """The level-by-level forward shared by both nets; a subclass defines a node's state.

    A state is one vector per node (`state_size` wide): `leaf(tokens)` makes the leaves',
    `combine(children)` an internal node's from its children's, `hidden(state)` is what the
    head reads at the root.
    """

    accepts = ("tree",)
    state_size: int

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        vocab_size: int,
        hidden_size: int,
        dropout: float,
    ) -> None:
        super().__init__()
        check_tree(type(self), input_shape)
        check_positive("num_outputs", num_outputs)
        check_positive("vocab_size", vocab_size)
        check_positive("hidden_size", hidden_size)
        check_dropout(dropout)
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, num_outputs))

    def leaf(self, tokens: Tensor) -> Tensor:
        """(nodes,) token ids -> (nodes, state_size) leaf states."""
        raise NotImplementedError

    def combine(self, children: Tensor) -> Tensor:
        """(nodes, 2, state_size) left and right children's states -> (nodes, state_size)."""
        raise NotImplementedError

    def hidden(self, state: Tensor) -> Tensor:
        """(nodes, state_size) -> (nodes, hidden_size): what the head reads."""
        return state

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != 4:
            raise ValueError(
                f"{type(self).__name__} needs a batch of trees (batch, nodes, 4), rows "
                f"[token, left, right, level], got shape {tuple(x.shape)}"
            )
        batch, nodes, _ = x.shape
        device = x.device
        tokens, left, right, level = x.reshape(batch * nodes, 4).long().unbind(1)
        offset = torch.arange(batch, device=device).repeat_interleave(nodes) * nodes
        roots = level.view(batch, nodes).argmax(1) + torch.arange(batch, device=device) * nodes
        # A leaf's state depends on its token only: one table row per token.
        table = self.leaf(torch.arange(self.embedding.num_embeddings, device=device))
        # Internal nodes sorted by level; each one's children as (internal index | leaf token).
        internal = torch.nonzero(level > 0).squeeze(1)
        internal = internal[torch.argsort(level[internal], stable=True)]
        counts = torch.bincount(level[internal], minlength=1).tolist()[1:]  # one host sync
        inode = torch.full_like(level, -1)
        inode[internal] = torch.arange(len(internal), device=device)
        children = torch.stack([left[internal], right[internal]], 1) + offset[internal, None]
        child_node = inode[children]  # (M, 2): internal index, or -1 for a leaf child
        child_token = tokens[children]
        # Each internal node is needed up to its parent's level (roots: to the end).
        last = len(counts) + 1
        needed_until = torch.full((len(internal),), last, device=device)
        node_level = level[internal]
        inner = child_node >= 0
        needed_until[child_node[inner]] = node_level[:, None].expand(-1, 2)[inner]
        # Level by level, the states of only the internal nodes still needed ("live"): each
        # level gathers its children from [live; the last level's new states; the token table],
        # so a level costs its own size plus the live nodes', not the whole batch's.
        live_ids = internal.new_empty(0)
        live = table.new_empty(0, table.shape[1])
        new_ids, new = live_ids, live
        start = 0
        for k, count in enumerate(counts, 1):
            ids = torch.arange(start, start + count, device=device)
            start += count
            source_ids = torch.cat([live_ids, new_ids])
            source = torch.cat([live, new, table])
            position = torch.full((len(internal),), -1, device=device)
            position[source_ids] = torch.arange(len(source_ids), device=device)
            index = torch.where(
                child_node[ids] >= 0, position[child_node[ids]], len(source_ids) + child_token[ids]
            )
            new_ids, new = ids, self.combine(source[index])
            keep = torch.nonzero(needed_until[source_ids] > k).squeeze(1)
            live_ids, live = source_ids[keep], source[keep]
        source_ids = torch.cat([live_ids, new_ids])
        source = torch.cat([live, new, table])
        position = torch.full((len(internal),), -1, device=device)
        position[source_ids] = torch.arange(len(source_ids), device=device)
        root_node = inode[roots]
        index = torch.where(
            root_node >= 0, position[root_node], len(source_ids) + tokens[roots]
        )
        return self.head(self.hidden(source[index]))


class TreeRNN(TreeNet):
    """Recursive neural network: leaves h = embedding(token); h = tanh(W [h_left; h_right] + b)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        vocab_size: int,
        hidden_size: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_shape, num_outputs, vocab_size, hidden_size, dropout)
        self.state_size = hidden_size
        self.compose = nn.Linear(2 * hidden_size, hidden_size)

    def leaf(self, tokens: Tensor) -> Tensor:
        return self.embedding(tokens)

    def combine(self, children: Tensor) -> Tensor:
        return torch.tanh(self.compose(children.flatten(1)))  # W [h_left; h_right] + b


class TreeLSTM(TreeNet):
    """Binary N-ary Tree-LSTM (Tai et al. 2015): a node's state is [h; c].

    Leaves: x = embedding(token), gates i, o, u = W x + b; c = i * u; h = o * tanh(c). Internal
    nodes: gates i, f_l, f_r, o, u = U_l h_left + U_r h_right + b, one forget gate per child;
    c = i * u + f_l * c_left + f_r * c_right; h = o * tanh(c) (sigmoid i, f, o; tanh u).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        vocab_size: int,
        hidden_size: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_shape, num_outputs, vocab_size, hidden_size, dropout)
        self.state_size = 2 * hidden_size
        self.leaf_gates = nn.Linear(hidden_size, 3 * hidden_size)  # W: i, o, u
        self.node_gates = nn.Linear(
            2 * hidden_size, 5 * hidden_size
        )  # [U_l U_r]: i, f_l, f_r, o, u

    def leaf(self, tokens: Tensor) -> Tensor:
        i, o, u = self.leaf_gates(self.embedding(tokens)).chunk(3, 1)
        c = torch.sigmoid(i) * torch.tanh(u)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], 1)

    def combine(self, children: Tensor) -> Tensor:
        h, c = children.chunk(2, 2)  # (nodes, 2, hidden) each
        gates = self.node_gates(h.flatten(1))  # U_l h_left + U_r h_right + b
        i, f_left, f_right, o, u = gates.chunk(5, 1)
        c = (
            torch.sigmoid(i) * torch.tanh(u)
            + torch.sigmoid(f_left) * c[:, 0]
            + torch.sigmoid(f_right) * c[:, 1]
        )
        return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], 1)

    def hidden(self, state: Tensor) -> Tensor:
        return state[:, : self.hidden_size]


def recursive_forward(net: TreeNet, x: Tensor) -> Tensor:
    """The reference: each tree on its own, one node at a time by Python recursion from the root.

    Same weights and cell as `net(x)` (leaf, combine, head), so the outputs agree up to float
    rounding; slow by design (one cell call per node).
    """
    outputs = []
    for example in x:
        rows = example.tolist()
        root = max(range(len(rows)), key=lambda node: rows[node][3])
        outputs.append(net.hidden(node_state(net, example, rows, root)))
    return net.head(torch.cat(outputs))


def node_state(net: TreeNet, example: Tensor, rows: list[list[int]], node: int) -> Tensor:
    """(1, state_size): one node's state, its subtree computed by recursion."""
    _, left, right, level = rows[node]
    if level == 0:
        return net.leaf(example[node, :1])
    children = [node_state(net, example, rows, left), node_state(net, example, rows, right)]
    return net.combine(torch.stack(children, 1))
