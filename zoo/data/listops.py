"""ListOps (Nangia & Bowman 2018): nested lists of digits under MIN, MAX, MED and SM (sum mod 10).

Reads the published release files (`train_d20s.tsv`, `test_d20s.tsv`: `label<TAB>sequence`, the
sequence a left-branching bracketing such as `( ( ( [MAX 2 ) 9 ) ] )`) when they are in
`data_dir`; otherwise generates examples with the published procedure and parameters, the same
for the same seed. Serves each example as a tree (for tree networks) or as a token sequence (for
sequence networks), whichever the model takes, in batches of similar cost (`BucketLoader`).

The published parameters (`DISTRIBUTIONS["published"]`) are those of the release's generator,
`python/spinn/data/listops/make_data.py` on the `listops-release` branch of nyu-mll/spinn:
MAX_DEPTH = 20 (a list at depth 20 is never drawn: lists nest at most 19 deep), MAX_ARGS = 5
(2-5 arguments per list), VALUE_P = 0.25 (an argument is a nested list with probability 0.25),
the operators MIN, MAX, MED, SM, and no length limit. That script keeps a *set* of distinct
examples, which thins out the common short ones; the release's statistics are those of a pool of
100,000 distinct examples (`pool`; docs/experiments.md compares them with the released test file).
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from zoo.data.base import TensorDataModule, check_counts
from zoo.data.files import DataFileError, read_bytes
from zoo.data.spec import DataSpec

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
VOCABULARY = ("<pad>", "(", ")", *OPERATORS, END, *(str(d) for d in range(10)))
TOKEN_ID = {token: i for i, token in enumerate(VOCABULARY)}
FILES = {"train": "train_d20s.tsv", "test": "test_d20s.tsv"}
# Named settings of the generator. "published": the release's (see the module docstring), with
# a 4,000-token cap that also bounds what one line of a file may cost (the release's longest is
# 2,815 tokens); "easy": shallow, short lists for quick runs and the tests.
DISTRIBUTIONS = {
    "published": {"max_depth": 20, "max_args": 5, "max_length": 4000, "pool": 100000},
    "easy": {"max_depth": 8, "max_args": 5, "max_length": 100, "pool": None},
}


def apply(operator: str, values: list[int]) -> int:
    """The value of one list."""
    if operator == "[MIN":
        return min(values)
    if operator == "[MAX":
        return max(values)
    if operator == "[MED":
        return int(statistics.median(values))
    return sum(values) % 10


def evaluate(tokens: list[str], where: str = "expression") -> int:
    """The value of a ListOps expression (its tokens; brackets "(" ")" are ignored).

    One ValueError naming `where` when the tokens are not one expression: a list without
    arguments, a "]" without an open list, an unclosed list, a digit outside every list, an
    unknown token or something after the end."""
    stack: list[list] = []
    value = None
    for token in tokens:
        if token in "()":
            continue
        if value is not None:
            raise ValueError(f"{where}: {token!r} after the end of the expression")
        if token in OPERATORS:
            stack.append([token])
        elif token == END:
            if not stack:
                raise ValueError(f"{where}: a ']' closes no list")
            operator, *values = stack.pop()
            if not values:
                raise ValueError(f"{where}: a list ({operator} ]) without arguments")
            result = apply(operator, values)
            if stack:
                stack[-1].append(result)
            else:
                value = result
        elif token in TOKEN_ID and token.isdigit():
            if stack:
                stack[-1].append(int(token))
            else:
                value = int(token)
        else:
            raise ValueError(f"{where}: unknown token {token!r}")
    if stack:
        raise ValueError(f"{where}: {len(stack)} list(s) not closed by ']'")
    if value is None:
        raise ValueError(f"{where}: no expression")
    return value


def generate_tree(rng: random.Random, depth: int, max_depth: int, max_args: int) -> Any:
    """The published procedure: an argument is a nested list with probability 0.25 (never at
    `max_depth`), a list has 2-`max_args` arguments under a random operator; left-branching
    pairs `((op, a), b) ...` closed by END."""
    if depth >= max_depth or rng.random() > 0.25:
        return rng.randrange(10)
    values = [
        generate_tree(rng, depth + 1, max_depth, max_args) for _ in range(rng.randint(2, max_args))
    ]
    tree: Any = (rng.choice(OPERATORS), values[0])
    for value in values[1:]:
        tree = (tree, value)
    return (tree, END)


def to_string(tree: Any) -> str:
    """The release format's bracketing of a generated tree."""
    if not isinstance(tree, tuple):
        return str(tree)
    return f"( {to_string(tree[0])} {to_string(tree[1])} )"


@functools.lru_cache(maxsize=2)
def distinct(count: int, seed: int, max_depth: int, max_args: int, max_length: int) -> tuple:
    """The first `count` distinct generated expressions (lists at the top, at most `max_length`
    tokens), in order of generation."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    attempts = 0
    while len(seen) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise ValueError(
                f"could not generate {count} distinct ListOps examples of at most {max_length} "
                f"tokens; raise data.max_length or data.max_depth, or lower the sizes"
            )
        tree = generate_tree(rng, 1, max_depth, max_args)
        if isinstance(tree, tuple):
            text = to_string(tree)
            if text.count(" ") < max_length:
                seen.setdefault(text, None)
    return tuple(seen)


def generate(
    count: int, seed: int, max_depth: int, max_args: int, max_length: int, pool: int | None = None
) -> list[str]:
    """`count` distinct expressions, the same for the same arguments. With a `pool` (>= count):
    a seeded random sample of `pool` distinct ones, as the release samples its set of distinct
    examples; without: the first `count` distinct ones."""
    if pool is None or pool <= count:
        return list(distinct(count, seed, max_depth, max_args, max_length))
    texts = distinct(pool, seed, max_depth, max_args, max_length)
    return [texts[i] for i in random.Random(seed).sample(range(pool), count)]


def parse(sequence: str, where: str) -> list[tuple[int, int, int, int]]:
    """A bracketed expression -> its binary tree as post-order rows (token, left, right, level);
    leaves are operators, digits and "]". One ValueError naming `where` when malformed."""
    rows: list[tuple[int, int, int, int]] = []
    stack: list[list[int]] = [[]]
    for token in sequence.split():
        if token == "(":
            stack.append([])
        elif token == ")":
            children = stack.pop() if len(stack) > 1 else None
            if children is None or len(children) != 2:
                count = "an unmatched ')'" if children is None else f"{len(children)} children"
                raise ValueError(f"{where}: malformed bracketing ({count} where 2 are needed)")
            left, right = children
            level = 1 + max(rows[left][3], rows[right][3])
            rows.append((TOKEN_ID["("], left, right, level))
            stack[-1].append(len(rows) - 1)
        elif token in TOKEN_ID and token not in ("<pad>", ")"):
            rows.append((TOKEN_ID[token], -1, -1, 0))
            stack[-1].append(len(rows) - 1)
        else:
            raise ValueError(f"{where}: unknown token {token!r}")
    if len(stack) != 1 or len(stack[0]) != 1:
        raise ValueError(f"{where}: malformed bracketing (unclosed '(' or several roots)")
    return rows


def check_example(sequence: str, where: str, max_depth: int, max_length: int) -> int:
    """The value of one example, after checking what it may cost: at most `max_length` tokens
    and lists nested at most `max_depth` deep; one ValueError naming `where` and the option."""
    tokens = sequence.split()
    if len(tokens) > max_length:
        raise ValueError(
            f"{where}: {len(tokens)} tokens, more than data.max_length={max_length} (raise it "
            f"to read this line)"
        )
    depth = deepest = 0
    for token in tokens:
        depth += token in OPERATORS
        depth -= token == END
        deepest = max(deepest, depth)
    if deepest > max_depth:
        raise ValueError(
            f"{where}: lists nested {deepest} deep, more than data.max_depth={max_depth} (raise "
            f"it to read this line)"
        )
    parse(sequence, where)
    return evaluate(tokens, where)


def read_release_file(path: Path, max_depth: int = 20, max_length: int = 4000) -> list:
    """`label<TAB>sequence` lines -> [(label, sequence)]; one ValueError naming a bad line."""
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataFileError(f"{path} is not UTF-8 text (byte {error.start})") from None
    examples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        label, tab, sequence = line.partition("\t")
        where = f"{path}, line {number}"
        if not tab or label.strip() not in {str(d) for d in range(10)}:
            raise ValueError(f"{where}: expected 'label<TAB>sequence' with a label 0-9")
        if check_example(sequence, where, max_depth, max_length) != int(label):
            raise ValueError(f"{where}: the label {label} is not the expression's value")
        examples.append((int(label), sequence))
    if not examples:
        raise ValueError(f"{path} holds no examples")
    return examples


def tree_of(sequence: str) -> Tensor:
    """(nodes, 4) int32 post-order rows of one expression."""
    return torch.tensor(parse(sequence, "example"), dtype=torch.int32)


def tokens_of(sequence: str) -> Tensor:
    """(length,) int32 token ids of one expression."""
    return torch.tensor([TOKEN_ID[t] for t in sequence.split()], dtype=torch.int32)


def pad_trees(trees: list[Tensor], nodes: int | None = None) -> Tensor:
    """(examples, nodes, 4) int64, padded with (0, -1, -1, -1) rows."""
    nodes = nodes or max(len(t) for t in trees)
    out = torch.tensor([0, -1, -1, -1]).repeat(len(trees), nodes, 1)
    for i, rows in enumerate(trees):
        out[i, : len(rows)] = rows
    return out


def pad_tokens(sequences: list[Tensor], length: int | None = None) -> Tensor:
    """(examples, length) int64 token ids, padded on the left (the last step is the last token)."""
    length = length or max(len(s) for s in sequences)
    padded = pad_sequence(sequences, batch_first=True, padding_value=0, padding_side="left")
    padded = padded.long()
    if padded.shape[1] < length:
        padded = torch.nn.functional.pad(padded, (length - padded.shape[1], 0))
    return padded


def as_trees(sequences: list[str], nodes: int) -> Tensor:
    """(examples, nodes, 4) int64: post-order rows, padded with (0, -1, -1, -1)."""
    return pad_trees([tree_of(s) for s in sequences], nodes)


def as_tokens(sequences: list[str], length: int) -> Tensor:
    """(examples, length) int64 token ids, padded on the left (the last step is the last token)."""
    return pad_tokens([tokens_of(s) for s in sequences], length)


class BucketLoader:
    """Batches of examples of similar cost, each padded only to its own longest member.

    `cost` per example: a tree's levels (the level-by-level nets take one step per level of the
    deepest tree in a batch) or a sequence's tokens. Shuffling draws the epoch's order from a
    generator seeded with `seed + epoch`: a random permutation, cut into chunks of
    `chunk_batches` batches, each chunk sorted by cost and cut into batches, and the batches
    shuffled. Without shuffling, batches in order of cost. Deterministic given (seed, epoch);
    `state_dict()` / `load_state_dict()` ({"epoch", "position": batches served}) resume an
    epoch where it stopped. With `world_size` > 1, each process takes every world_size-th batch
    (the first batches again where the count does not divide, as torch's DistributedSampler
    pads).

    With `max_cost` (a sequence model's tokens per batch, padding included): examples are
    grouped instead by cost class (costs up to 2, 4, 8, ...), each class cut into batches of
    at most `max_cost // its largest cost` (at least 1) examples, shuffled within the class;
    long sequences come in small batches, and the count of batches is the same every epoch.
    """

    def __init__(
        self,
        examples: list[Tensor],
        targets: Tensor,
        cost: Tensor,
        pad: Any,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        chunk_batches: int = 50,
        max_cost: int | None = None,
    ) -> None:
        self.examples, self.targets, self.cost, self.pad = examples, targets, cost, pad
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.chunk_batches = rank, world_size, chunk_batches
        self.epoch = self.serving = self.position = self.resume_at = 0
        self.classes: list[tuple[Tensor, int]] = []  # (members, batch size) per cost class
        if max_cost is not None:
            level = torch.ceil(torch.log2(cost.clamp(min=1).double())).long()
            for value in torch.unique(level).tolist():
                members = torch.nonzero(level == value).squeeze(1)
                members = members[torch.argsort(cost[members], stable=True)]
                self.classes.append((members, max(1, min(batch_size, max_cost >> value))))
        self.count = (
            sum(math.ceil(len(m) / size) for m, size in self.classes)
            if self.classes
            else math.ceil(len(examples) / batch_size)
        )

    def __len__(self) -> int:
        return math.ceil(self.count / self.world_size)  # the same count in every process

    def batches(self, epoch: int) -> list[Tensor]:
        """The example indices of each of this process's batches in `epoch`."""
        n, size = len(self.examples), self.batch_size
        generator = torch.Generator().manual_seed(self.seed + epoch)
        if self.classes:
            batches = []
            for members, class_size in self.classes:
                if self.shuffle:
                    members = members[torch.randperm(len(members), generator=generator)]
                batches += list(members.split(class_size))
            if self.shuffle:
                batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        elif not self.shuffle:
            order = torch.argsort(self.cost, stable=True)
            batches = list(order.split(size))
        else:
            order = torch.randperm(n, generator=generator)
            batches = []
            for chunk in order.split(size * self.chunk_batches):
                chunk = chunk[torch.argsort(self.cost[chunk], stable=True)]
                batches += list(chunk.split(size))
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        total = len(self) * self.world_size  # like DistributedSampler: the first batches again
        batches = (batches * math.ceil(total / max(len(batches), 1)))[:total]
        return batches[self.rank : total : self.world_size]

    def state_dict(self) -> dict[str, int]:
        # Lightning stops after len(self) batches without exhausting the iterator: a finished
        # epoch is reported as the start of the next one.
        if self.position >= len(self):
            return {"epoch": self.serving + 1, "position": 0}
        return {"epoch": self.serving, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """The next iteration serves epoch `state["epoch"]` from batch `state["position"]`."""
        self.epoch, self.resume_at = int(state["epoch"]), int(state["position"])
        self.serving, self.position = self.epoch, self.resume_at

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # Every iteration is a new epoch from its first batch (one left early, as by a sanity
        # check, is not continued; Lightning never reads past the last batch, so the end of
        # this generator may never run), unless load_state_dict said where to resume.
        epoch, self.position, self.resume_at = self.epoch, self.resume_at, 0
        self.serving, self.epoch = epoch, epoch + 1
        for index in self.batches(epoch)[self.position :]:
            self.position += 1
            yield self.pad([self.examples[i] for i in index.tolist()]), self.targets[index]
        self.serving, self.position = epoch + 1, 0


class PaddedSplits(Mapping):
    """{split: (padded inputs, targets)}, each split padded when first asked for (the loaders
    pad batch by batch and never ask)."""

    def __init__(self, module: ListOpsDataModule) -> None:
        self.module = module
        self.cache: dict[str, tuple[Tensor, Tensor]] = {}

    def __getitem__(self, split: str) -> tuple[Tensor, Tensor]:
        if split not in self.cache:
            examples, targets = self.module.items[split]
            self.cache[split] = (self.module.pad(examples, self.module.width), targets)
        return self.cache[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self.module.items)

    def __len__(self) -> int:
        return len(self.module.items)


class ListOpsDataModule(TensorDataModule):
    """ListOps as trees (inputs "tree": (nodes, 4)) or token sequences ("tokens"), 10 classes.

    With `train_d20s.tsv` and `test_d20s.tsv` in `data_dir`: those (a seeded `val_fraction` of
    the training file becomes validation). Otherwise `num_train`/`num_val`/`num_test` generated
    examples of the named `distribution` ("published" or "easy", `DISTRIBUTIONS`); `max_depth`,
    `max_args`, `max_length` and `pool` override its values. `max_depth` and `max_length` also
    bound each line of a file (lists nested deeper, or more tokens, are refused by line).
    `batch_tokens` bounds a sequence model's batch (examples x padded length; a longer example
    comes alone): what one step may cost in memory on the longest examples.
    """

    name = "listops"
    forms = ("tree", "tokens")

    def __init__(
        self,
        data_dir: str = "data",
        inputs: str = "tree",
        distribution: str = "published",
        num_train: int = 20000,
        num_val: int = 1000,
        num_test: int = 1000,
        max_depth: int | None = None,
        max_args: int | None = None,
        max_length: int | None = None,
        pool: int | None = None,
        val_fraction: float = 0.05,
        seed: int = 0,
        batch_tokens: int = 32768,
        **loader_args: Any,
    ) -> None:
        super().__init__(**loader_args)
        check_counts(batch_tokens=batch_tokens)
        self.batch_tokens = batch_tokens
        if inputs not in self.forms:
            raise ValueError(f"data.inputs must be one of {self.forms}, got {inputs!r}")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"data.distribution must be one of {tuple(DISTRIBUTIONS)}, got {distribution!r}"
            )
        given = {"max_depth": max_depth, "max_args": max_args, "max_length": max_length}
        shape = {**DISTRIBUTIONS[distribution], **{k: v for k, v in given.items() if v is not None}}
        if pool is not None:
            shape["pool"] = pool
        check_counts(num_train=num_train, num_val=num_val, num_test=num_test)
        check_counts(**{k: v for k, v in shape.items() if v is not None})
        if shape["max_args"] < 2:
            raise ValueError(f"data.max_args must be >= 2, got {shape['max_args']}")
        if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
            raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction!r}")
        self.data_dir = Path(data_dir)
        self.inputs = inputs
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.shape = shape
        self.val_fraction = val_fraction
        self.seed = seed
        self.examples: dict[str, list[tuple[int, str]]] = {}
        self.items: dict[str, tuple[list[Tensor], Tensor]] = {}

    def use(self, inputs: str) -> None:
        """Serve the examples as `inputs` ("tree" or "tokens") from now on."""
        if inputs != self.inputs:
            self.inputs = inputs
            self.splits, self.items = {}, {}

    def read_examples(self) -> dict[str, list[tuple[int, str]]]:
        """{split: [(label, sequence)]}: the release files if present, else generated."""
        files = {split: self.data_dir / name for split, name in FILES.items()}
        limits = {"max_depth": self.shape["max_depth"], "max_length": self.shape["max_length"]}
        if all(path.is_file() for path in files.values()):
            train = read_release_file(files["train"], **limits)
            if len(train) < 2:
                raise DataFileError(
                    f"{files['train']} holds 1 example; training needs 2 or more (1 for validation)"
                )
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
            n_val = max(1, round(len(train) * self.val_fraction))
            return {
                "train": [train[i] for i in sorted(order[n_val:].tolist())],
                "val": [train[i] for i in sorted(order[:n_val].tolist())],
                "test": read_release_file(files["test"], **limits),
            }
        if any(path.is_file() for path in files.values()):
            missing = [str(p) for p in files.values() if not p.is_file()]
            raise FileNotFoundError(f"ListOps release file missing: {', '.join(missing)}")
        total = sum(self.sizes.values())
        texts = generate(total, self.seed, **self.shape)
        examples = [(evaluate(t.split()), t) for t in texts]
        first, second = self.sizes["train"], self.sizes["train"] + self.sizes["val"]
        return {"train": examples[:first], "val": examples[first:second], "test": examples[second:]}

    @property
    def pad(self) -> Any:
        return pad_trees if self.inputs == "tree" else pad_tokens

    def setup(self, stage: str | None = None) -> None:
        if self.items:
            return
        if not self.examples:
            self.examples = self.read_examples()
        convert = tree_of if self.inputs == "tree" else tokens_of
        for split, pairs in self.examples.items():
            if not pairs:
                raise ValueError(f"the {split} split is empty")
            targets = torch.tensor([label for label, _ in pairs])
            self.items[split] = ([convert(text) for _, text in pairs], targets)
        # The widest example of any split: the nominal input shape a net is built for.
        self.width = max(len(x) for examples, _ in self.items.values() for x in examples)
        self.splits = PaddedSplits(self)

    def cost(self, examples: list[Tensor]) -> Tensor:
        """Per example: its tree's levels, or its tokens."""
        if self.inputs == "tree":
            return torch.tensor([int(x[-1, 3]) for x in examples])
        return torch.tensor([len(x) for x in examples])

    def _loader(self, split: str, shuffle: bool) -> BucketLoader:
        self.setup()
        examples, targets = self.items[split]
        trainer = getattr(self, "trainer", None)
        return BucketLoader(
            examples,
            targets,
            self.cost(examples),
            self.pad,
            self.batch_size,
            shuffle=shuffle,
            seed=torch.initial_seed() % 2**32,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            max_cost=self.batch_tokens if self.inputs == "tokens" else None,
        )

    @property
    def spec(self) -> DataSpec:
        self.setup()
        shape = (self.width, 4) if self.inputs == "tree" else (self.width,)
        return DataSpec(shape, 10, "classification", self.inputs, len(VOCABULARY), False, None)
