"""What a task function declares, computed once per function (``inspect`` is slow).

Shared by the executor and the built-in plugins, which look at every task's parameters.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any


@functools.lru_cache(maxsize=1024)
def parameters(func: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    """The parameters of ``func`` (empty when it has no inspectable signature)."""
    try:
        return tuple(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return ()


@functools.lru_cache(maxsize=1024)
def type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of ``func``; empty when a forward reference does not
    resolve (plugins then leave its parameters alone)."""
    try:
        return typing.get_type_hints(func)
    except Exception:
        return {}
