"""The QTasks plugin contract: markers, trigger specs, the chained caller, loading.

A plugin author needs only :data:`hookimpl`::

    from qtasks_hooks import hookimpl

    @hookimpl
    def broker_add_before(model):
        return model.model_copy(update={"priority": 1})

Every trigger is documented in :mod:`qtasks_hooks.specs`.
"""

from __future__ import annotations

from ._errors import (
    PluginAsyncError,
    PluginLoadError,
    PluginReturnError,
    PluginSpecError,
    QTasksHookError,
)
from ._loading import (
    ENTRY_POINT_GROUP,
    ENV_ALLOW,
    ENV_BLOCK,
    check,
    load_plugins,
    selected_entry_points,
)
from ._manager import PluginInfo, PluginManager, get_plugin_manager
from ._markers import PROJECT_NAME, hookimpl, hookspec
from ._rules import ReplaceRule, replaces_keys, replaces_pair, replaces_value

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_ALLOW",
    "ENV_BLOCK",
    "PROJECT_NAME",
    "PluginAsyncError",
    "PluginInfo",
    "PluginLoadError",
    "PluginManager",
    "PluginReturnError",
    "PluginSpecError",
    "QTasksHookError",
    "ReplaceRule",
    "check",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "load_plugins",
    "replaces_keys",
    "replaces_pair",
    "replaces_value",
    "selected_entry_points",
]
