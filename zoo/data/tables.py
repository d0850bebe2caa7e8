"""Tables: scikit-learn's embedded real data sets and a user's own CSV file, nothing downloaded.

Every column is standardised with the training split's mean and std; a regression target is
left in its own units and its training mean and std go to the task (`DataSpec.target_scale`).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn import datasets
from torch import Tensor, nn

from zoo.data.base import TensorDataModule, split_indices
from zoo.data.spec import DataSpec

KINDS = ("auto", "classification", "regression")
SKLEARN_TABLES = {  # name: (loader, its keyword arguments, kind of learning)
    "iris": (datasets.load_iris, {}, "classification"),
    "wine": (datasets.load_wine, {}, "classification"),
    "breast_cancer": (datasets.load_breast_cancer, {}, "classification"),
    "diabetes": (datasets.load_diabetes, {"scaled": False}, "regression"),
}


class TableDataModule(TensorDataModule):
    """Rows of numeric features (inputs "vector") and one target each; a seeded split.

    After set-up, `feature_mean` and `feature_std` hold the training split's statistics, and
    `classes` the class names of a classification table.
    """

    name = "table"

    def __init__(
        self, val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0, **loader_args
    ) -> None:
        super().__init__(**loader_args)
        split_indices(1, val_fraction, test_fraction, seed)  # validate the fractions now
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.classes: list[str] = []

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Features (rows, columns) as floats, targets (rows,): class ids or values."""
        raise NotImplementedError

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        features, targets = self.read()
        features = torch.as_tensor(features, dtype=torch.float32)
        index = split_indices(len(features), self.val_fraction, self.test_fraction, self.seed)
        smallest = min(len(i) for i in index.values())
        if smallest < 2:
            raise ValueError(
                f"{self.name} has {len(features)} rows: too few for train, val and test splits "
                f"of 2 rows or more (data.val_fraction={self.val_fraction}, "
                f"data.test_fraction={self.test_fraction})"
            )
        train = features[index["train"]]
        self.feature_mean = train.float().mean(0)
        self.feature_std = train.std(0).masked_fill(train.std(0) == 0, 1.0)  # constant columns
        inputs = (features - self.feature_mean) / self.feature_std
        dtype = torch.long if self.kind == "classification" else torch.float32
        targets = torch.as_tensor(targets, dtype=dtype)
        check_finite(self.name, "feature", features, inputs)
        if self.kind == "regression":
            check_finite(self.name, "target", targets[:, None], targets[:, None] - targets.mean())
        return {split: (inputs[i], targets[i]) for split, i in index.items()}

    @property
    def spec(self) -> DataSpec:
        """Feature vectors; for regression, the training targets' mean and std as well."""
        spec = super().spec
        if self.kind != "regression":
            return spec
        targets = self.splits["train"][1]
        std = float(targets.std()) or 1.0
        return dataclasses.replace(spec, target_scale=(float(targets.mean()), std))

    def linear_map(self, task: nn.Module) -> tuple[Tensor, Tensor]:
        """(weight, bias) of a one-layer network (model=neuron) in the table's own units: what
        it predicts for a raw row x is weight @ x + bias (logits, for classes)."""
        layers = [m for m in task.modules() if isinstance(m, nn.Linear)]
        if len(layers) != 1:
            raise ValueError(
                f"linear_map needs a network with one linear layer (model=neuron), "
                f"got {len(layers)}"
            )
        self.setup()
        scale, shift = getattr(task, "target_std", 1.0), getattr(task, "target_mean", 0.0)
        if self.kind != "regression":
            scale, shift = 1.0, 0.0
        weight = layers[0].weight.detach().cpu() * scale / self.feature_std
        bias = layers[0].bias.detach().cpu() * scale + shift - weight @ self.feature_mean
        return weight, bias


class SklearnTable(TableDataModule):
    """One of scikit-learn's embedded tables: iris, wine, breast_cancer (classes) or diabetes
    (regression: disease progression after one year)."""

    def __init__(self, dataset: str = "iris", **options: Any) -> None:
        if dataset not in SKLEARN_TABLES:
            raise ValueError(
                f"data.dataset must be one of {sorted(SKLEARN_TABLES)}, got {dataset!r}"
            )
        super().__init__(**options)
        self.name = dataset
        self.kind = SKLEARN_TABLES[dataset][2]

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        load, options, _ = SKLEARN_TABLES[self.name]
        table = load(**options)
        self.classes = [str(c) for c in table.get("target_names", [])]
        return table.data, table.target


class CSVDataModule(TableDataModule):
    """A CSV file with a header row: numeric feature columns and a `target` column.

    `kind="auto"`: classification when the target holds names (each distinct value a class),
    regression when it holds numbers; "classification" makes numbers class labels too.
    `columns`: the feature columns to use (default: all but the target).
    """

    def __init__(
        self,
        path: str | None = None,
        target: str | None = None,
        kind: str = "auto",
        columns: list[str] | None = None,
        delimiter: str = ",",
        **options: Any,
    ) -> None:
        if not path:
            raise ValueError("data=csv needs data.path=<file.csv> and data.target=<column>")
        if kind not in KINDS:
            raise ValueError(f"data.kind must be one of {KINDS}, got {kind!r}")
        super().__init__(**options)
        self.path = Path(path)
        self.name = self.path.stem
        self.target = target
        self.kind_option = kind
        self.kind = "classification" if kind == "classification" else "regression"
        self.columns = list(columns) if columns else None
        self.delimiter = delimiter

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        header, rows = self.read_rows()
        if self.target not in header:
            raise ValueError(
                f"data.target {self.target!r} is not a column of {self.path}; "
                f"its columns: {', '.join(header)}"
            )
        features = self.columns or [c for c in header if c != self.target]
        unknown = [c for c in features if c not in header or c == self.target]
        if unknown or not features:
            raise ValueError(
                f"data.columns {unknown or features} are not feature columns of {self.path}; "
                f"its columns: {', '.join(header)} (target: {self.target})"
            )
        values = []
        for number, row in enumerate(rows, start=1):
            cells = {column: row[header.index(column)].strip() for column in features}
            for column, cell in cells.items():
                if not is_number(cell):
                    raise ValueError(self.not_a_number(number, column, cell, "a feature"))
            values.append([float(cell) for cell in cells.values()])
        labels = [row[header.index(self.target)].strip() for row in rows]
        numeric = all(is_number(label) for label in labels)
        if self.kind_option == "auto":
            self.kind = "regression" if numeric else "classification"
        if self.kind == "regression":
            if not numeric:
                bad = next(i for i, label in enumerate(labels) if not is_number(label))
                raise ValueError(self.not_a_number(bad + 1, self.target, labels[bad], "a target"))
            return np.array(values), np.array([float(label) for label in labels])
        keys = [float(label) for label in labels] if numeric else labels  # 2 before 10
        names, ids = np.unique(keys, return_inverse=True)
        if len(names) < 2:
            raise ValueError(f"{self.path}: the target {self.target!r} has only one class")
        self.classes = [f"{name:g}" if numeric else str(name) for name in names]
        return np.array(values), ids

    def read_rows(self) -> tuple[list[str], list[list[str]]]:
        """The header and the data rows, each as long as the header; one line on what is
        wrong otherwise."""
        if not self.path.exists():
            raise FileNotFoundError(f"data.path {self.path}: no such file")
        if not self.path.is_file():  # a pipe would block, a folder is no table
            what = "a folder" if self.path.is_dir() else "not a regular file (a pipe or device)"
            raise ValueError(f"data.path {self.path} is {what}, not a CSV file")
        if not self.delimiter or len(self.delimiter) != 1:
            raise ValueError(f"data.delimiter must be one character, got {self.delimiter!r}")
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as file:
                lines = [row for row in csv.reader(file, delimiter=self.delimiter) if row]
        except (UnicodeDecodeError, csv.Error) as error:
            raise ValueError(f"{self.path} is not a readable CSV text file: {error}") from None
        if not lines:
            raise ValueError(f"{self.path} is empty: it needs a header row and data rows")
        header, rows = [c.strip() for c in lines[0]], lines[1:]
        if not rows:
            raise ValueError(f"{self.path} has a header but no data rows")
        if self.target is None:
            raise ValueError(
                f"data=csv needs data.target=<column>; columns of {self.path}: {', '.join(header)}"
            )
        for number, row in enumerate(rows, start=1):
            if len(row) != len(header):
                raise ValueError(
                    f"{self.path}: data row {number} has {len(row)} cells, the header {len(header)}"
                )
        return header, rows

    def not_a_number(self, row: int, column: str, cell: str, what: str) -> str:
        """One line: which cell is not a number, and why it must be."""
        shown = repr(cell) if cell else "an empty cell"
        return (
            f"{self.path}: column {column!r} holds {shown}, not a number, in data row {row}; "
            f"{what} column must be numeric"
        )


def check_finite(name: str, what: str, values: Tensor, standardised: Tensor) -> None:
    """One ValueError line when a value overflows float32 (|x| > 3.4e38) or its column's
    standardisation does (a column whose values are too far apart, 1e308 and -1e308)."""
    bad = ~torch.isfinite(values)
    if bad.any():
        row, column = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name}: a {what} value in row {row + 1} (column {column + 1}) is too large for "
            "float32 (|x| > 3.4e38); rescale the column"
        )
    columns = (~torch.isfinite(standardised)).any(0).nonzero().flatten().tolist()
    if columns:
        raise ValueError(
            f"{name}: {what} column {columns[0] + 1} spans too wide a range to standardise in "
            "float32 (its mean or spread overflows); rescale it"
        )


def is_number(text: str) -> bool:
    """A finite float such as '3', '-1.5e3' (not '', 'nan' or 'inf')."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
