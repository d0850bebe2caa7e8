"""ListOps (Nangia & Bowman 2018): nested lists of digits under MIN, MAX, MED and SM (sum mod 10).

Reads the published release files (`train_d20s.tsv`, `test_d20s.tsv`: `label<TAB>sequence`, the
sequence a left-branching bracketing such as `( ( ( [MAX 2 ) 9 ) ] )`) when they are in
`data_dir`; otherwise generates examples with the published procedure, the same for the same
seed. Serves each example as a tree (for tree networks) or as a token sequence (for sequence
networks), whichever the model takes.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from zoo.data.base import TensorDataModule, check_counts
from zoo.data.files import DataFileError, read_bytes
from zoo.data.spec import DataSpec

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
VOCABULARY = ("<pad>", "(", ")", *OPERATORS, END, *(str(d) for d in range(10)))
TOKEN_ID = {token: i for i, token in enumerate(VOCABULARY)}
FILES = {"train": "train_d20s.tsv", "test": "test_d20s.tsv"}


def apply(operator: str, values: list[int]) -> int:
    """The value of one list."""
    if operator == "[MIN":
        return min(values)
    if operator == "[MAX":
        return max(values)
    if operator == "[MED":
        return int(statistics.median(values))
    return sum(values) % 10


def evaluate(tokens: list[str]) -> int:
    """The value of a ListOps expression (its tokens; brackets "(" ")" are ignored)."""
    stack: list[list] = []
    value = None
    for token in tokens:
        if token in OPERATORS:
            stack.append([token])
        elif token == END:
            operator, *values = stack.pop()
            value = apply(operator, values)
            if stack:
                stack[-1].append(value)
        elif token.isdigit():
            if not stack:
                return int(token)
            stack[-1].append(int(token))
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


def generate(count: int, seed: int, max_depth: int, max_args: int, max_length: int) -> list[str]:
    """`count` unique expressions (lists at the top, at most `max_length` tokens), in order of
    generation: the same for the same arguments."""
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
        text = to_string(tree)
        if isinstance(tree, tuple) and len(text.split()) <= max_length:
            seen.setdefault(text, None)
    return list(seen)


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
        elif token in TOKEN_ID and token not in ("<pad>",):
            rows.append((TOKEN_ID[token], -1, -1, 0))
            stack[-1].append(len(rows) - 1)
        else:
            raise ValueError(f"{where}: unknown token {token!r}")
    if len(stack) != 1 or len(stack[0]) != 1:
        raise ValueError(f"{where}: malformed bracketing (unclosed '(' or several roots)")
    return rows


def read_release_file(path: Path) -> list[tuple[int, str]]:
    """`label<TAB>sequence` lines -> (label, sequence); one ValueError naming a bad line."""
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
        parse(sequence, where)
        if evaluate(sequence.split()) != int(label):
            raise ValueError(f"{where}: the label {label} is not the expression's value")
        examples.append((int(label), sequence))
    if not examples:
        raise ValueError(f"{path} holds no examples")
    return examples


def as_trees(sequences: list[str], nodes: int) -> Tensor:
    """(examples, nodes, 4) int64: post-order rows, padded with (0, -1, -1, -1)."""
    out = torch.tensor([0, -1, -1, -1]).repeat(len(sequences), nodes, 1)
    for i, sequence in enumerate(sequences):
        rows = parse(sequence, f"example {i}")
        out[i, : len(rows)] = torch.tensor(rows)
    return out


def as_tokens(sequences: list[str], length: int) -> Tensor:
    """(examples, length) int64 token ids, padded on the left (the last step is the last token)."""
    out = torch.zeros(len(sequences), length, dtype=torch.long)
    for i, sequence in enumerate(sequences):
        ids = [TOKEN_ID[t] for t in sequence.split()]
        out[i, length - len(ids) :] = torch.tensor(ids)
    return out


class ListOpsDataModule(TensorDataModule):
    """ListOps as trees (inputs "tree": (nodes, 4)) or token sequences ("tokens"), 10 classes.

    With `train_d20s.tsv` and `test_d20s.tsv` in `data_dir`: those (a seeded `val_fraction` of
    the training file becomes validation). Otherwise `num_train`/`num_val`/`num_test` generated
    examples (depth below `max_depth`, 2-`max_args` arguments, at most `max_length` tokens).
    """

    name = "listops"
    forms = ("tree", "tokens")

    def __init__(
        self,
        data_dir: str = "data",
        inputs: str = "tree",
        num_train: int = 40000,
        num_val: int = 1000,
        num_test: int = 1000,
        max_depth: int = 8,
        max_args: int = 5,
        max_length: int = 100,
        val_fraction: float = 0.05,
        seed: int = 0,
        **loader_args: Any,
    ) -> None:
        super().__init__(**loader_args)
        if inputs not in self.forms:
            raise ValueError(f"data.inputs must be one of {self.forms}, got {inputs!r}")
        check_counts(
            num_train=num_train,
            num_val=num_val,
            num_test=num_test,
            max_depth=max_depth,
            max_args=max_args,
            max_length=max_length,
        )
        if max_args < 2:
            raise ValueError(f"data.max_args must be >= 2, got {max_args}")
        if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
            raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction!r}")
        self.data_dir = Path(data_dir)
        self.inputs = inputs
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.shape = {"max_depth": max_depth, "max_args": max_args, "max_length": max_length}
        self.val_fraction = val_fraction
        self.seed = seed
        self.examples: dict[str, list[tuple[int, str]]] = {}

    def use(self, inputs: str) -> None:
        """Serve the examples as `inputs` ("tree" or "tokens") from now on."""
        if inputs != self.inputs:
            self.inputs = inputs
            self.splits = {}

    def read_examples(self) -> dict[str, list[tuple[int, str]]]:
        """{split: [(label, sequence)]}: the release files if present, else generated."""
        files = {split: self.data_dir / name for split, name in FILES.items()}
        if all(path.is_file() for path in files.values()):
            train = read_release_file(files["train"])
            if len(train) < 2:
                raise DataFileError(
                    f"{files['train']} holds 1 example; training needs 2 or more (1 for validation)"
                )
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
            n_val = max(1, round(len(train) * self.val_fraction))
            return {
                "train": [train[i] for i in sorted(order[n_val:].tolist())],
                "val": [train[i] for i in sorted(order[:n_val].tolist())],
                "test": read_release_file(files["test"]),
            }
        if any(path.is_file() for path in files.values()):
            missing = [str(p) for p in files.values() if not p.is_file()]
            raise FileNotFoundError(f"ListOps release file missing: {', '.join(missing)}")
        total = sum(self.sizes.values())
        texts = generate(total, self.seed, **self.shape)
        examples = [(evaluate(t.split()), t) for t in texts]
        first, second = self.sizes["train"], self.sizes["train"] + self.sizes["val"]
        return {"train": examples[:first], "val": examples[first:second], "test": examples[second:]}

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        if not self.examples:
            self.examples = self.read_examples()
        sequences = {s: [text for _, text in pairs] for s, pairs in self.examples.items()}
        every = [t.split() for texts in sequences.values() for t in texts]
        if self.inputs == "tree":  # a binary tree of n leaves has 2n - 1 nodes
            nodes = max(2 * sum(t not in "()" for t in tokens) - 1 for tokens in every)
            inputs = {s: as_trees(texts, nodes) for s, texts in sequences.items()}
        else:
            length = max(len(tokens) for tokens in every)
            inputs = {s: as_tokens(texts, length) for s, texts in sequences.items()}
        return {
            s: (inputs[s], torch.tensor([label for label, _ in pairs]))
            for s, pairs in self.examples.items()
        }

    @property
    def spec(self) -> DataSpec:
        self.setup()
        shape = tuple(self.splits["train"][0].shape[1:])
        return DataSpec(shape, 10, "classification", self.inputs, len(VOCABULARY), False, None)
