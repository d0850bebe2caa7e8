"""The PyTorch architecture zoo: plain networks (zoo.nets), Lightning tasks (zoo.tasks).

`create_model`, `list_models` and `load` are imported on first use, so `from zoo.nets import
ConvNet` loads torch alone, not Lightning or Hydra.
"""

from typing import Any

__all__ = ["create_model", "list_models", "load"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from zoo import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
