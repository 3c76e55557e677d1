"""QTasks in a Django project: settings, task discovery, enqueue on commit.

::

    # settings.py
    INSTALLED_APPS = [..., "qtasks_core.contrib.django", "shop"]
    QTASKS = {"name": "shop", "redis_url": "redis://localhost:6379/0"}

    # shop/tasks.py (found in every installed app, like models.py)
    from qtasks_core.contrib.django import app

    @app.task
    def ship(order_id: int) -> None: ...

    # shop/views.py
    from django.db import transaction
    from qtasks_core.contrib.django import add_task_on_commit

    with transaction.atomic():
        order = Order.objects.create(...)
        add_task_on_commit("ship", order.pk)  # enqueued when the block commits

and run the workers with ``DJANGO_SETTINGS_MODULE=mysite.settings qtasks worker -A
qtasks_core.contrib.django:app``.

- :func:`get_app` (also the module attribute ``app``): the project's app, built from
  ``settings.QTASKS`` (:data:`SETTING`; see :func:`build_app` for the keys) on first
  use, with every installed app's ``tasks`` module imported once the app registry has
  its models.
- :func:`autodiscover_tasks`: the original QTasks' function, for an app you build
  yourself.
- :func:`add_task_on_commit` / :func:`send_task_on_commit`: ``add_task`` / ``send_task``
  deferred with ``transaction.on_commit``: a task added in an ``atomic`` block that rolls
  back is never enqueued, and a worker never runs a task before the rows it reads are
  committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._app import SETTING, build_app, get_app, setup
from ._commit import add_task_on_commit, send_task_on_commit
from ._discover import autodiscover_tasks

if TYPE_CHECKING:
    from qtasks_core.app import QueueTasks

__all__ = [
    "SETTING",
    "add_task_on_commit",
    "autodiscover_tasks",
    "build_app",
    "get_app",
    "send_task_on_commit",
    "setup",
]


def __getattr__(name: str) -> QueueTasks:
    # ``app`` is looked up, not defined: importing this package reads no settings, and
    # ``qtasks worker -A qtasks_core.contrib.django:app`` gets a set-up Django with it.
    if name == "app":
        setup()
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
