"""The app created last in this process: what ``shared_task`` handles, a ``Task``'s
``wait_result`` and a workflow sent without an app use.

It sits at the bottom of the imports (it imports nothing of QTasks at run time), so that
a data model or a workflow finds the app without importing the app's module: no import
cycle runs through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import BaseQueueTasks

_app: BaseQueueTasks | None = None


def set_current(app: BaseQueueTasks) -> None:
    """Make ``app`` the current one (each new app does)."""
    global _app
    _app = app


def current() -> BaseQueueTasks | None:
    """The app created last in this process, if any."""
    return _app
