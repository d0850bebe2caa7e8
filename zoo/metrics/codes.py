"""What learned codes are worth without labels in training: k-means clusters scored against the
labels (normalised mutual information), and a logistic-regression probe's accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor


def kmeans_nmi(features: Tensor, labels: Tensor, clusters: int, seed: int = 0) -> Tensor:
    """NMI between the labels and k-means' `clusters` clusters of the (flattened) features,
    each scaled to unit length first (k-means by direction, as for embeddings; codes and pixels
    alike, docs/experiments.md)."""
    points = F.normalize(features.detach().flatten(1).double(), dim=1).cpu().numpy()
    assigned = KMeans(clusters, n_init=10, random_state=seed).fit_predict(points)
    score = normalized_mutual_info_score(labels.cpu().numpy(), assigned)
    return torch.tensor(score, dtype=torch.float32)


def probe_accuracy(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor
) -> Tensor:
    """Test accuracy of a logistic regression fitted on standardised training features."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probe.fit(train_features.detach().flatten(1).cpu().numpy(), train_labels.cpu().numpy())
    score = probe.score(test_features.detach().flatten(1).cpu().numpy(), test_labels.cpu().numpy())
    return torch.tensor(score, dtype=torch.float32)
