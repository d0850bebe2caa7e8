"""The tools' `key=value` options (Hydra's command-line style): typed, checked, with `--help`;
each bad option is one ValueError line that names it."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """One `key=value` option: its type ("int", "float", "str", "list"), default (None: unset),
    smallest allowed value (numbers), and what it does."""

    kind: str
    default: Any = None
    help: str = ""
    minimum: float | None = None
    required: bool = False


def program(tool: str) -> str:
    """How the user ran `tool`: `zoo predict` through the console script, else `python
    predict.py` (the checkout's shim)."""
    first = sys.argv[0] if sys.argv else ""
    return first if first.startswith("zoo ") else f"python {tool}.py"


def usage(tool: str, options: dict[str, Option]) -> str:
    parts = [
        f"{k}=..." if o.required else f"[{k}={o.default if o.default is not None else '...'}]"
        for k, o in options.items()
    ]
    return f"usage: {program(tool)} {' '.join(parts)}"


def help_text(tool: str, summary: str, options: dict[str, Option]) -> str:
    width = max(len(name) for name in options) + 2
    lines = [usage(tool, options), "", summary.strip(), "", "options (key=value):"]
    for name, option in options.items():
        default = (
            " (required)"
            if option.required
            else (f" (default: {option.default})" if option.default is not None else "")
        )
        lines.append(f"  {name:<{width}}{option.help}{default}")
    return "\n".join(lines)


def wants_help(argv: list[str]) -> bool:
    return any(a in ("-h", "--help", "help") for a in argv)


def parse(tool: str, argv: list[str], options: dict[str, Option]) -> dict[str, Any]:
    """`key=value` arguments as typed values (defaults filled in); one ValueError line for an
    argument without `=`, an unknown key, a missing required one or a value of the wrong
    type or range."""
    given: dict[str, str] = {}
    for argument in argv:
        key, equals, value = argument.partition("=")
        if not equals or not key:
            raise ValueError(
                f"{tool} takes key=value options, got {argument!r}; see {program(tool)} --help"
            )
        if key not in options:
            raise ValueError(
                f"{tool} takes no option {key!r}; it takes {', '.join(options)} "
                f"(see {program(tool)} --help)"
            )
        given[key] = value
    missing = [k for k, o in options.items() if o.required and k not in given]
    if missing:
        raise ValueError(
            f"{tool} needs {', '.join(f'{k}=...' for k in missing)}; {usage(tool, options)}"
        )
    values = {k: o.default for k, o in options.items()}
    for key, text in given.items():
        values[key] = convert(key, text, options[key])
    return values


def convert(key: str, text: str, option: Option) -> Any:
    """One option's text as its type, checked against its minimum."""
    if option.kind == "str":
        if not text:
            raise ValueError(f"{key} is empty; give a value ({option.help})")
        return text
    if option.kind == "list":
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise ValueError(f"{key} needs one or more comma-separated names, got {text!r}")
        return items
    try:
        value = int(text) if option.kind == "int" else float(text)
    except ValueError:
        what = "an integer" if option.kind == "int" else "a number"
        raise ValueError(f"{key} must be {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {text!r}")
    if option.minimum is not None and value < option.minimum:
        raise ValueError(f"{key} must be >= {option.minimum:g}, got {text}")
    return value
