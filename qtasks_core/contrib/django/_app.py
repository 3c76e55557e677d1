"""The project's app, built from ``settings.QTASKS``."""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

try:
    import django  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("qtasks_core.contrib.django needs Django: pip install django") from exc
from django.apps import apps  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.utils.module_loading import import_string  # type: ignore[import-untyped]

from qtasks_core.app import QueueTasks
from qtasks_core.config import QueueConfig
from qtasks_core.errors import TaskOptionError

from ._discover import autodiscover_tasks

__all__ = ["SETTING", "build_app", "get_app", "setup"]

log = logging.getLogger("qtasks.django")

#: The Django setting that holds the app's options (a dict).
SETTING: Final = "QTASKS"

#: Keys passed to :class:`~qtasks_core.QueueTasks` as they are.
_APP_KEYS: Final = frozenset(
    {
        "name",
        "redis_url",
        "broker_url",
        "load_entry_points",
        "allow_plugins",
        "block_plugins",
        "max_payload",
        "builtin_plugins",
    }
)
#: Keys of ``app.config`` (:class:`~qtasks_core.config.QueueConfig`), ``result_ttl`` too.
_CONFIG_KEYS: Final = frozenset(QueueConfig.model_fields)
#: Keys of this integration.
_OWN_KEYS: Final = frozenset({"plugins", "autodiscover"})
_KEYS: Final = sorted(_APP_KEYS | _CONFIG_KEYS | _OWN_KEYS)

_lock = threading.RLock()
_app: QueueTasks | None = None
_discovered = False


def _options() -> Mapping[str, Any]:
    options = getattr(settings, SETTING, {})
    if not isinstance(options, Mapping):
        raise TaskOptionError(
            f"settings.{SETTING} must be a dict of options, got {type(options).__name__}: "
            f'write {SETTING} = {{"name": "myproject", "redis_url": "redis://..."}}'
        )
    return options


def _check_keys(options: Mapping[str, Any]) -> None:
    for key in options:
        if key in _KEYS:
            continue
        close = difflib.get_close_matches(str(key), _KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TaskOptionError(
            f"settings.{SETTING} has no option {key!r}{hint}; the options are {', '.join(_KEYS)}"
        )


def _modules(options: Mapping[str, Any]) -> list[str]:
    modules = options.get("autodiscover", ["tasks"])
    if isinstance(modules, str) or not all(isinstance(m, str) for m in modules):
        raise TaskOptionError(
            f'settings.{SETTING}["autodiscover"] is a list of module names, got {modules!r}: '
            'write ["tasks"] (the default), or [] to import none'
        )
    return list(modules)


def build_app(options: Mapping[str, Any] | None = None) -> QueueTasks:
    """A new app from ``options`` (default: ``settings.QTASKS``, else ``{}``).

    The keys are :class:`~qtasks_core.QueueTasks`' options (``name``, ``redis_url``
    or ``broker_url``, ``load_entry_points``, ``allow_plugins``, ``block_plugins``,
    ``max_payload``, ``builtin_plugins``), the settings of ``app.config``
    (``task_default_priority``, ``result_ttl``, ``logs_default_level_server``,
    ``logs_default_level_client``; those not given come from ``QTASKS_*`` variables,
    as without Django), and:

    - ``plugins``: plugins to register, objects or dotted paths
      (``"myproject.plugins.Audit"``, imported as Django imports its own settings'
      paths);
    - ``autodiscover``: the modules looked for in every installed app (default
      ``["tasks"]``; read by :func:`get_app`).

    An unknown key raises :class:`~qtasks_core.TaskOptionError` naming it.
    """
    options = _options() if options is None else options
    _check_keys(options)
    _modules(options)
    kwargs = {key: options[key] for key in _APP_KEYS if key in options}
    config = {key: options[key] for key in _CONFIG_KEYS if key in options}
    plugins = [
        import_string(plugin) if isinstance(plugin, str) else plugin
        for plugin in options.get("plugins", ())
    ]
    return QueueTasks(**kwargs, config=QueueConfig(**config), plugins=plugins)


def get_app() -> QueueTasks:
    """The project's app: built from ``settings.QTASKS`` on the first call, the same
    object for the rest of the process (the task modules declare their tasks on it,
    so a later change of the setting does not rebuild it: give tests their own
    ``QTASKS`` in their settings module, e.g. ``"redis_url": "memory://"``).

    Once Django has loaded the models of every installed app, the first call also
    imports each app's task modules (:func:`autodiscover_tasks`, the modules of
    ``QTASKS["autodiscover"]``). A call made earlier (a ``models.py`` enqueueing at
    import) gets the app without them; ``qtasks_core.contrib.django`` in
    ``INSTALLED_APPS`` discovers them when Django is ready.
    """
    global _app, _discovered
    # Re-entrant: the task modules imported below call get_app() themselves.
    with _lock:
        if _app is None:
            _app = build_app()
        if not _discovered and apps.models_ready:
            _discovered = True
            autodiscover_tasks(_app, _modules(_options()))
        return _app


def setup() -> None:
    """Set Django up (``django.setup()``) unless it is, or is being, set up: what a
    worker started as ``qtasks worker -A qtasks_core.contrib.django:app`` needs."""
    # ``loading`` stays true once the registry is populated, and is already true while
    # the apps' modules import: setup() must not run then (it is not re-entrant).
    if apps.loading:
        return
    try:
        django.setup()
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(
            f"{exc}. For a worker, name the settings module: "
            "DJANGO_SETTINGS_MODULE=mysite.settings qtasks worker -A "
            "qtasks_core.contrib.django:app"
        ) from exc
    log.debug("Django set up for QTasks (%s)", settings.SETTINGS_MODULE)
