"""A run's readable name: the overrides that say what it trains."""

from __future__ import annotations

import re

# Overrides that say where a run writes or how it shows progress, not what it trains: left out of
# its name (model and data name its parent folder).
UNNAMED = (
    "paths.",
    "hydra.",
    "ckpt_path",
    "threads",
    "callbacks.",
    "logger.",
    "trainer.enable_progress_bar",
)
NAME_LIMIT = 120  # characters of overrides in a folder name; the token keeps it unique


def readable_items(overrides: list[str]) -> list[str]:
    """The overrides that say what a run trains, sorted, safe in a folder name (`/` -> `-`)."""
    kept = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in ("model", "data") or key.startswith(UNNAMED):
            continue
        kept.append(f"{key}={value}" if value else f"~{key}")
    return sorted(item.replace("/", "-").replace(" ", "") for item in kept)


def readable_overrides(overrides: list[str]) -> str:
    """What a run changed, for its name: `optimizer=sgd,trainer.max_epochs=5`."""
    name = ",".join(readable_items(overrides))
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 3] + "..."


def hydra_value(text: str) -> str:
    """`text` as a Hydra override value: its grammar's special characters (`=`, `,`, brackets,
    spaces) escaped with `\\`, so a run folder named by its overrides can be passed back
    (`hydra.run.dir=logs/cnn-digits/optimizer\\=sgd_...`). Text with other characters
    (non-ASCII letters, quotes, `$`) goes in single quotes, which Hydra's grammar reads whole."""
    if re.fullmatch(r"[A-Za-z0-9/_.:+@%~\-\\=,\[\]{}() ]*", text):
        return re.sub(r"([\\=,\[\]{}() ])", r"\\\1", text)
    quoted = text.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${")
    return f"'{quoted}'"
