"""Built-in features, registered like any third-party plugin (and as removable)."""

from __future__ import annotations

from qtasks_hooks import PluginManager

from .retry import RetryPlugin

BUILTINS = {"qtasks.retry": RetryPlugin}


def register_builtins(pm: PluginManager) -> None:
    """Register every built-in plugin; ``pm.unregister(name=...)`` turns one off."""
    for name, plugin in BUILTINS.items():
        pm.register(plugin(), name=name)


__all__ = ["BUILTINS", "RetryPlugin", "register_builtins"]
