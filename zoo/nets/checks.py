"""Argument checks shared by every network: one clear ValueError line per bad option."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_sizes(name: str, sizes: Sequence[int], allow_empty: bool = False) -> None:
    """A list of positive integers, non-empty unless `allow_empty`."""
    if (not sizes and not allow_empty) or any(
        not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes
    ):
        what = "a list" if allow_empty else "a non-empty list"
        raise ValueError(f"model.{name} must be {what} of positive integers, got {sizes!r}")


def check_positive(name: str, value: Any) -> None:
    """A positive integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"model.{name} must be a positive integer, got {value!r}")


def check_dropout(dropout: float, name: str = "dropout") -> None:
    """A probability in [0, 1)."""
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ValueError(f"model.{name} must be in [0, 1), got {dropout!r}")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """One of `choices`."""
    if value not in choices:
        raise ValueError(f"model.{name} must be one of {sorted(choices)}, got {value!r}")


def check_image(cls: type, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """(channels, height, width), or one line saying the network needs images."""
    if len(input_shape) != 3:
        raise ValueError(
            f"{cls.__name__} needs images (channels, height, width), got shape {tuple(input_shape)}"
        )
    channels, height, width = input_shape
    return channels, height, width


def check_tokens(cls: type, input_shape: Sequence[int]) -> int:
    """The time steps T of (T,) token-id windows, or one line saying the network needs them."""
    if len(input_shape) != 1:
        raise ValueError(
            f"{cls.__name__} needs token ids (time steps,), got shape {tuple(input_shape)}"
        )
    return input_shape[0]


def check_heads(width: int, heads: int) -> None:
    """Attention width split evenly over the heads."""
    if width % heads != 0:
        raise ValueError(
            f"model.width {width} must be divisible by model.heads {heads} "
            f"(each head gets width / heads features)"
        )


def check_mlp_ratio(mlp_ratio: float, width: int) -> int:
    """A transformer block's MLP width, width * mlp_ratio rounded, at least 1."""
    if (
        not isinstance(mlp_ratio, (int, float))
        or isinstance(mlp_ratio, bool)
        or round(width * mlp_ratio) < 1
    ):
        raise ValueError(
            f"model.mlp_ratio must be a positive number (MLP width = width * mlp_ratio), "
            f"got {mlp_ratio!r}"
        )
    return round(width * mlp_ratio)


def check_tree(cls: type, input_shape: Sequence[int]) -> int:
    """The node rows N of (N, 4) trees, or one line saying the network needs them."""
    if len(input_shape) != 2 or input_shape[1] != 4:
        raise ValueError(
            f"{cls.__name__} needs trees (nodes, 4), rows [token, left, right, level], "
            f"got shape {tuple(input_shape)}"
        )
    return input_shape[0]
