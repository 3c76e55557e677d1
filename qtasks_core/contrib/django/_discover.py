"""``autodiscover_tasks``: import the task modules of every installed Django app."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib import import_module
from typing import TYPE_CHECKING

from django.apps import apps  # type: ignore[import-untyped]
from django.core.exceptions import AppRegistryNotReady  # type: ignore[import-untyped]
from django.utils.module_loading import module_has_submodule  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from qtasks_core.app import QueueTasks

__all__ = ["autodiscover_tasks"]

log = logging.getLogger("qtasks.django")


def autodiscover_tasks(app: QueueTasks, modules: Iterable[str] | None = None) -> list[str]:
    """Import ``<app>.tasks`` (or each of ``modules``) of every installed Django app,
    so that the tasks they declare are registered; returns the modules imported.

    The original QTasks' function, with two differences: an installed app given as
    its config class (``"shop.apps.ShopConfig"``) is found, and an error raised by a
    task module propagates (it was logged and the module's tasks were missing at run
    time). An app without such a module is skipped.

    Needs Django's app registry: call it after ``django.setup()``, or from an
    ``AppConfig.ready()``; :func:`get_app` calls it for you.
    """
    if not apps.apps_ready:
        raise AppRegistryNotReady(
            "autodiscover_tasks() needs Django's installed apps: call it after "
            "django.setup() or in an AppConfig.ready(), or add "
            "'qtasks_core.contrib.django' to INSTALLED_APPS, which does it"
        )
    names = ["tasks"] if modules is None else list(modules)
    found: list[str] = []
    for config in apps.get_app_configs():
        for name in names:
            # Asked first, so that an ImportError raised inside an existing module
            # (its own missing dependency) is not taken for "no such module".
            if module_has_submodule(config.module, name):
                module = f"{config.name}.{name}"
                import_module(module)
                found.append(module)
    log.debug("app %s: task modules %s", app.name, found)
    return found
