"""The Django app config of ``qtasks_core.contrib.django`` (in ``INSTALLED_APPS``)."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]

from ._app import get_app


class QTasksConfig(AppConfig):  # type: ignore[misc]
    """Builds the project's app and discovers the task modules when Django starts, so
    that an error in a ``tasks.py`` shows at start, not at the first enqueue."""

    name = "qtasks_core.contrib.django"
    label = "qtasks"
    verbose_name = "QTasks"

    def ready(self) -> None:
        get_app()
