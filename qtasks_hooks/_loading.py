"""Loading third-party plugins from the ``qtasks.plugins`` entry-point group.

Nothing here runs at import time: the app (or the CLI) calls :func:`load_plugins`
when it starts, and calling it again is a no-op for plugins already loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import pluggy

from ._errors import PluginLoadError
from ._manager import PluginManager

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP: Final = "qtasks.plugins"
ENV_ALLOW: Final = "QTASKS_PLUGINS"
ENV_BLOCK: Final = "QTASKS_DISABLE_PLUGINS"


def _names(text: str) -> set[str]:
    return {part.strip() for part in text.split(",") if part.strip()}


def selected_entry_points(
    *,
    allow: Iterable[str] | None = None,
    block: Iterable[str] = (),
    group: str = ENTRY_POINT_GROUP,
) -> list[EntryPoint]:
    """The entry points that :func:`load_plugins` would load, sorted by name.

    ``allow`` (else ``$QTASKS_PLUGINS``; unset means all, empty means none) keeps only
    the named plugins; ``block`` plus ``$QTASKS_DISABLE_PLUGINS`` removes names.
    """
    allowed: set[str] | None
    if allow is not None:
        allowed = set(allow)
    elif ENV_ALLOW in os.environ:
        allowed = _names(os.environ[ENV_ALLOW])
    else:
        allowed = None
    blocked = set(block) | _names(os.environ.get(ENV_BLOCK, ""))
    # Imported here: importlib.metadata brings email, zipfile and csv (tens of ms),
    # which a process that only imports the markers or shows help never needs.
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=group)}
    return [
        found[name]
        for name in sorted(found)
        if (allowed is None or name in allowed) and name not in blocked
    ]


def load_plugins(
    pm: PluginManager,
    *,
    allow: Iterable[str] | None = None,
    block: Iterable[str] = (),
    group: str = ENTRY_POINT_GROUP,
) -> list[str]:
    """Register the selected entry-point plugins on ``pm``, then validate every impl.

    Returns the names newly loaded. Raises :class:`PluginLoadError` naming the entry
    point and its distribution when one fails to import or implements a trigger that
    does not exist (a misspelt name fails here, at start-up, not silently later).
    """
    loaded = []
    for ep in selected_entry_points(allow=allow, block=block, group=group):
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        where = f"entry point {ep.name!r} ({ep.value}) of distribution {dist or '?'}"
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginLoadError(
                f"cannot load plugin {where}: {type(exc).__name__}: {exc}"
            ) from exc
        pm.note_entry_point(ep.name, dist, version, ep.value)
        try:
            pm.register(plugin, name=ep.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginLoadError(f"plugin {where} is invalid: {exc}") from exc
        loaded.append(ep.name)
    check(pm)
    return loaded


def check(pm: PluginManager) -> None:
    """Fail with the plugin's name when any registered impl names no known trigger."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        dist = pm.distribution_of(name)
        origin = f" (distribution {dist})" if dist else ""
        raise PluginLoadError(
            f"plugin {name!r}{origin} implements a trigger that does not exist: {exc}. "
            "Check the name against the hookspecs in qtasks_hooks.specs"
        ) from exc
