"""Built-in features, registered like any third-party plugin and as removable.

========================  ==============================================  ==========
name                      what                                            module
========================  ==============================================  ==========
``qtasks.retry``          ``retry=N`` / ``retry_on_exc`` with backoff      retry
``qtasks.pydantic``       model-typed parameters validated                 pydantic_args
``qtasks.depends``        ``Depends(func, scope=...)`` parameters          depends
``qtasks.state``          per-worker ``State`` objects by annotation       state
``qtasks.tasklog``        a worker's line per finished task                tasklog
``qtasks.history``        a worker's figures per 10 s, for the dashboard   history
========================  ==============================================  ==========

Turn one off with ``QueueTasks(block_plugins=["qtasks.depends"])`` or
``QTASKS_DISABLE_PLUGINS=qtasks.depends``; all of them with
``QueueTasks(builtin_plugins=False)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from qtasks_hooks import ENV_BLOCK, PluginManager

from .depends import Depends, DependsPlugin
from .history import HistoryPlugin
from .pydantic_args import PydanticArgsPlugin
from .retry import RetryPlugin
from .state import State, StatePlugin
from .tasklog import TaskLogPlugin

BUILTINS: dict[str, Callable[[], object]] = {
    "qtasks.retry": RetryPlugin,
    "qtasks.pydantic": PydanticArgsPlugin,
    "qtasks.depends": DependsPlugin,
    "qtasks.state": StatePlugin,
    "qtasks.tasklog": TaskLogPlugin,
    "qtasks.history": HistoryPlugin,
}


def register_builtins(pm: PluginManager, block: Iterable[str] = ()) -> list[str]:
    """Register the built-in plugins not blocked (by ``block`` or the environment)."""
    blocked = set(block) | {n.strip() for n in os.environ.get(ENV_BLOCK, "").split(",")}
    names = []
    for name, factory in BUILTINS.items():
        if name not in blocked:
            pm.register(factory(), name=name)
            names.append(name)
    return names


__all__ = [
    "BUILTINS",
    "Depends",
    "DependsPlugin",
    "HistoryPlugin",
    "PydanticArgsPlugin",
    "RetryPlugin",
    "State",
    "StatePlugin",
    "register_builtins",
]
