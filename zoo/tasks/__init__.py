"""LightningModules, one per kind of learning, all on one base (`Task`).

A task owns the loss, metrics, logging, optimizers and the checkpoint monitor; its networks are
plain modules from zoo.nets (`task.net`, or `task.generator` and `task.discriminator`). Each
task class declares what the rest of the zoo needs to know (see `Task`) and is registered in
`TASKS` by the `@register` decorator: a new kind of learning is a registered subclass of Task.
"""

from __future__ import annotations

from zoo.tasks.adversarial import Adversarial
from zoo.tasks.base import TASKS, Task, register
from zoo.tasks.language_model import LanguageModel
from zoo.tasks.reconstruction import Reconstruction, VariationalReconstruction
from zoo.tasks.supervised import Supervised

# The task a plain network trains under, by the kind of learning its data asks for.
TASK_FOR_KIND: dict[str, type[Task]] = {
    "classification": Supervised,
    "regression": Supervised,
    "language_model": LanguageModel,
}


def task_named(name: str | None) -> type[Task] | None:
    """The registered task class called `name` (its class name, as the HPARAMS tab's `task`
    column records it, or its dotted path); the latest defined when several share a name."""
    if name in TASKS:
        return TASKS[name]
    return next((cls for cls in reversed(TASKS.values()) if cls.__name__ == name), None)


def declared_metrics() -> dict[str, bool]:
    """Every metric any registered task declares -> whether higher is better."""
    metrics: dict[str, bool] = {}
    for cls in TASKS.values():
        for name, higher in cls.higher_is_better.items():
            metrics.setdefault(name, higher)
    return metrics


def learning_rate_options() -> tuple[str, ...]:
    """The model options any registered task declares to be learning rates (a GAN's g_lr)."""
    options = (name for cls in TASKS.values() for name in cls.learning_rate_options)
    return tuple(dict.fromkeys(options))


__all__ = [
    "TASKS",
    "TASK_FOR_KIND",
    "Adversarial",
    "LanguageModel",
    "Reconstruction",
    "Supervised",
    "Task",
    "VariationalReconstruction",
    "declared_metrics",
    "learning_rate_options",
    "register",
    "task_named",
]
