"""What a network needs to know about its data, in one small object the data module builds."""

from __future__ import annotations

from dataclasses import dataclass, field

# The kinds of input a network can declare in its `accepts`, by the shape of one sample.
INPUTS_BY_RANK = {3: "image", 2: "sequence", 1: "vector"}
DESCRIPTIONS = {
    "image": "images (channels, height, width)",
    "sequence": "sequences (time steps, features)",
    "vector": "flat feature vectors (features,)",
    "tokens": "token sequences (ids)",
    "tree": "binary trees (nodes, [token, left, right, level])",
}


@dataclass(frozen=True)
class DataSpec:
    """One sample's shape, the number of outputs, the kind of learning and the kind of input.

    `kind`: "classification" (`num_outputs` classes), "regression" (`num_outputs` values) or
    "language_model" (the next token at every position: `num_outputs` = `vocab_size`).
    `inputs`: "image", "sequence" or "vector", taken from the shape when not given; or "tokens"
    (int64 ids below `vocab_size`; `vocabulary[i]` is the character of id i), or "tree"
    (int64 rows [token, left child, right child, level] in post-order; see zoo/nets/tree.py).
    `per_position`: one output per input position instead of one per sample.
    `target_scale`: (mean, std) of the training split's regression targets, for data whose
    targets the task should learn standardised (tables); None: learned as they are.
    """

    input_shape: tuple[int, ...]
    num_outputs: int
    kind: str = "classification"
    inputs: str = field(default="")
    vocab_size: int | None = None
    per_position: bool = False
    vocabulary: str | None = None
    target_scale: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(n) for n in self.input_shape))
        if not self.inputs:
            inputs = INPUTS_BY_RANK.get(len(self.input_shape), f"{len(self.input_shape)}-d arrays")
            object.__setattr__(self, "inputs", inputs)

    def describe(self) -> str:
        """E.g. 'images (channels, height, width) of shape (1, 8, 8)'."""
        return f"{DESCRIPTIONS.get(self.inputs, self.inputs)} of shape {self.input_shape}"

    def arguments(self) -> dict[str, object]:
        """The facts a network or task constructor may take, by their argument names."""
        return {
            "input_shape": self.input_shape,
            "num_outputs": self.num_outputs,
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "per_position": self.per_position,
            "vocabulary": self.vocabulary,
            "target_scale": self.target_scale,
        }
