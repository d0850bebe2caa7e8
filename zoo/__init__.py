"""The PyTorch architecture zoo: plain networks (zoo.nets), Lightning tasks (zoo.tasks)."""

from zoo.registry import create_model, list_models, load

__all__ = ["create_model", "list_models", "load"]
