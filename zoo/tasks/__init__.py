"""LightningModules, one per kind of learning, all on one base (`Task`).

A task owns the loss, metrics, logging, optimizers and the checkpoint monitor; its networks are
plain modules from zoo.nets (`task.net`, or `task.generator` and `task.discriminator`).
"""

from zoo.tasks.adversarial import Adversarial
from zoo.tasks.base import Task
from zoo.tasks.language_model import LanguageModel
from zoo.tasks.reconstruction import Reconstruction, VariationalReconstruction
from zoo.tasks.supervised import Supervised

# The task a plain network trains under, by the kind of learning its data asks for.
TASK_FOR_KIND: dict[str, type[Task]] = {
    "classification": Supervised,
    "regression": Supervised,
    "language_model": LanguageModel,
}

# The only task classes a checkpoint may name (its `zoo_class`): loading never imports by name.
TASKS: dict[str, type[Task]] = {
    f"{cls.__module__}.{cls.__qualname__}": cls
    for cls in (Supervised, LanguageModel, Adversarial, Reconstruction, VariationalReconstruction)
}

__all__ = [
    "TASKS",
    "TASK_FOR_KIND",
    "Adversarial",
    "LanguageModel",
    "Reconstruction",
    "Supervised",
    "Task",
    "VariationalReconstruction",
]
