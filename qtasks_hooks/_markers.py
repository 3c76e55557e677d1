"""The pluggy markers of the ``qtasks`` project.

Plugin authors need only ``from qtasks_hooks import hookimpl``.
"""

from __future__ import annotations

from typing import Final

import pluggy

PROJECT_NAME: Final = "qtasks"

hookspec: Final = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl: Final = pluggy.HookimplMarker(PROJECT_NAME)
