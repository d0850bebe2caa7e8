"""The PyTorch architecture zoo: classic architectures as Lightning modules."""

from zoo.registry import create_model, list_models

__all__ = ["create_model", "list_models"]
