"""Triggers fired by the Starter (``starter_*``).

The Starter runs the worker and the components it needs in one process. Its triggers
fire in the worker process: the ``qtasks worker`` process, or any process that runs a
Starter itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtasks_hooks._markers import hookspec

if TYPE_CHECKING:
    from qtasks_core.starter import Starter


@hookspec
def starter_start(starter: Starter) -> None:
    """The Starter is starting the worker and its components.

    Fired in the worker process, once, as it starts.

    :param starter: The Starter that is starting.
    :return: The return value is ignored.
    """


@hookspec
def starter_stop(starter: Starter) -> None:
    """The Starter is stopping the worker and its components.

    Fired in the worker process, once, as it stops.

    :param starter: The Starter that is stopping.
    :return: The return value is ignored.
    """
