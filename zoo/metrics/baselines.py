"""Baselines on a data module's own splits: what a score means next to the simplest predictors.

Each baseline is fitted on the training split and scored on the test split, under the names the
tasks log their test metrics with, so it can stand as a row beside the models it explains.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR

from zoo.metrics.codes import kmeans_nmi

Baselines = dict[str, dict[str, float]]  # baseline name -> {test metric: value}


def classification_baselines(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> Baselines:
    """The majority class, and logistic regression and an RBF-kernel SVC on standardised
    features (scikit-learn's defaults otherwise), as test/acc."""
    majority = np.bincount(train_y).argmax()
    found = {"constant (majority class)": {"test/acc": float(np.mean(test_y == majority))}}
    for name, model in (
        ("logistic regression", LogisticRegression(max_iter=5000)),
        ("RBF SVC", SVC(kernel="rbf")),
    ):
        fitted = make_pipeline(StandardScaler(), model).fit(train_x, train_y)
        found[f"{name} (scikit-learn)"] = {"test/acc": float(fitted.score(test_x, test_y))}
    return found


def regression_scores(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """test/mse, test/mae and test/r2 of a prediction, in the target's units."""
    return {
        "test/mse": float(np.mean((prediction - target) ** 2)),
        "test/mae": float(mean_absolute_error(target, prediction)),
        "test/r2": float(r2_score(target, prediction)),
    }


def regression_baselines(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> Baselines:
    """The training mean, and least squares and an RBF-kernel SVR on standardised features
    (the SVR on the standardised target), as test/mse, test/mae, test/r2."""
    found = mean_baseline(train_y, test_y)
    for name, model in (
        ("linear regression", LinearRegression()),
        ("RBF SVR", TransformedTargetRegressor(SVR(kernel="rbf"), transformer=StandardScaler())),
    ):
        fitted = make_pipeline(StandardScaler(), model).fit(train_x, train_y)
        found[f"{name} (scikit-learn)"] = regression_scores(fitted.predict(test_x), test_y)
    return found


def mean_baseline(train_y: np.ndarray, test_y: np.ndarray) -> Baselines:
    """Predicting the training mean (sequence regression, e.g. the adding problem)."""
    prediction = np.full(len(test_y), train_y.mean())
    return {"constant (training mean)": regression_scores(prediction, test_y)}


def majority_baseline(train_y: np.ndarray, test_y: np.ndarray) -> Baselines:
    """Predicting the most frequent training class (token or tree classification)."""
    majority = np.bincount(train_y).argmax()
    return {"constant (majority class)": {"test/acc": float(np.mean(test_y == majority))}}


def pixel_clusters(test_x: torch.Tensor, test_y: torch.Tensor, clusters: int) -> Baselines:
    """k-means on the raw test pixels, scored against the labels (NMI), beside autoencoders'
    test/nmi of their codes (zoo.metrics.codes.kmeans_nmi, as the task computes it)."""
    return {"k-means on raw pixels": {"test/nmi": float(kmeans_nmi(test_x, test_y, clusters))}}


def data_baselines(datamodule: Any) -> Baselines:
    """Every baseline that fits this data module's splits (set up here), by name."""
    datamodule.setup("fit")
    if hasattr(datamodule, "reference_bits_per_char"):  # text: what bits per character mean
        return {
            name.removeprefix("reference/").replace("_bpc", ""): {"test/bpc": value}
            for name, value in datamodule.reference_bits_per_char().items()
        }
    splits = getattr(datamodule, "splits", None)
    if not splits:
        return {}
    spec = datamodule.spec
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    flat = [t.flatten(1).double().numpy() for t in (train_x, test_x)]
    y_train, y_test = train_y.numpy(), test_y.numpy()
    if spec.kind == "regression":
        y_train, y_test = (y.reshape(len(y), -1)[:, 0] for y in (y_train, y_test))
        if spec.inputs == "vector":
            return regression_baselines(flat[0], y_train, flat[1], y_test)
        return mean_baseline(y_train, y_test)
    if spec.inputs in ("vector", "image"):
        found = classification_baselines(flat[0], y_train, flat[1], y_test)
        if spec.inputs == "image":
            found |= pixel_clusters(test_x, test_y, spec.num_outputs)
        return found
    return majority_baseline(y_train, y_test)
