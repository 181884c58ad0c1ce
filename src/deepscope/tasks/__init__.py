"""Task families: what differs between kinds of experiment lives in one registered family each.

A family (:class:`~deepscope.tasks.base.TaskFamily`) owns its config checks, its data checks, what
the model's output means (:class:`~deepscope.training.task.Task` for ``supervised``), the
LightningModule that trains it, its loss, its default metrics and its figures. ``Experiment`` asks
the family of the config for each of these and knows no family by name. Families are declared in
``TASKS`` (:mod:`deepscope.components`); ``docs/tasks.md`` says how to add one.
"""

from __future__ import annotations

from deepscope.tasks.base import TaskFamily, family_for, family_name

__all__ = ["TaskFamily", "family_for", "family_name"]
