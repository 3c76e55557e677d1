"""The operator's dashboard: ``qtasks web -A mod:app`` and :func:`create_app`, a
mountable ASGI app (overview, workers, tasks, dead letters, schedules; live updates;
guarded actions). Needs the ``web`` extra: ``pip install 'qtasks-core[web]'``.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    raise ImportError(
        f"the QTasks dashboard needs the 'web' extra ({exc.name} is missing): "
        "pip install 'qtasks-core[web]'",
        name=exc.name,
    ) from exc

from ._app import create_app

__all__ = ["create_app"]
