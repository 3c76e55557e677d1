"""Errors of the hook layer.

::

    QTasksHookError
    ├── PluginReturnError (also TypeError)      an impl returned the wrong shape
    ├── PluginAsyncError (also RuntimeError)    an async impl met a sync call site
    ├── PluginSpecError (also ValueError)       a spec or an impl breaks the contract
    └── PluginLoadError (also ImportError)      an entry-point plugin failed to load

An exception raised *inside* a plugin is not wrapped: it keeps its type and gains a
note (``BaseException.add_note``) naming the plugin and the trigger, so ``except``
clauses written for the plugin's own errors keep working.
"""

from __future__ import annotations


class QTasksHookError(Exception):
    """Base of every error raised by :mod:`qtasks_hooks` itself."""


class PluginReturnError(QTasksHookError, TypeError):
    """A plugin returned a value whose shape does not fit its trigger."""


class PluginAsyncError(QTasksHookError, RuntimeError):
    """An async impl was met by a trigger fired outside a running event loop."""


class PluginSpecError(QTasksHookError, ValueError):
    """A hookspec or a hookimpl does not follow the QTasks hook contract."""


class PluginLoadError(QTasksHookError, ImportError):
    """An entry-point plugin could not be imported, or its impls do not validate."""
