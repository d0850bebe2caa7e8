"""What a network needs to know about its data, in one small object the data module builds."""

from __future__ import annotations

from dataclasses import dataclass, field

# The kinds of input a network can declare in its `accepts`, by the shape of one sample.
INPUTS_BY_RANK = {3: "image", 2: "sequence", 1: "vector"}
DESCRIPTIONS = {
    "image": "images (channels, height, width)",
    "sequence": "sequences (time steps, features)",
    "vector": "flat feature vectors (features,)",
}


@dataclass(frozen=True)
class DataSpec:
    """One sample's shape, the number of outputs, the kind of learning and the kind of input.

    `kind`: "classification" (`num_outputs` classes) or "regression" (`num_outputs` values).
    `inputs`: "image", "sequence" or "vector"; taken from the shape when not given.
    """

    input_shape: tuple[int, ...]
    num_outputs: int
    kind: str = "classification"
    inputs: str = field(default="")

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
        return {"input_shape": self.input_shape, "num_outputs": self.num_outputs, "kind": self.kind}
