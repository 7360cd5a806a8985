"""Tasks the trainer can train, by the task name models register with (``register_model(task=...)``)."""
from __future__ import annotations

from cnnzoo.registry import get_model_info
from cnnzoo.training.tasks.base import Task, TrainMetrics
from cnnzoo.training.tasks.image import ImageClassification
from cnnzoo.training.tasks.sequence import SequenceTask

TASKS: dict[str, type[Task]] = {
    "image": ImageClassification,
    "sequence": SequenceTask,
}


def task_for_model(model_name: str) -> type[Task]:
    """The task class that trains ``model_name`` (an unknown name raises ModelError with suggestions)."""
    return TASKS[get_model_info(model_name).task]


__all__ = ["Task", "TrainMetrics", "ImageClassification", "SequenceTask", "TASKS", "task_for_model"]
