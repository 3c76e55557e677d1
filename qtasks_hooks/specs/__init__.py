"""The trigger specs of QTasks: one module per component that fires triggers.

Each module declares the triggers of its component as ``@hookspec`` functions. A spec's
docstring is the reference for that trigger: when and in which process it fires, each
argument, and what its return replaces. The plugin manager adds the modules of
:data:`SPEC_MODULES` as hookspecs, in that order.

How returns chain, for a trigger declared ``firstresult=True`` with a rule from
:mod:`qtasks_hooks._rules` (the chained caller applies the rule):

- an impl that returns ``None`` keeps the current values;
- a returned value replaces the argument it names; a returned dict replaces, key by key,
  the arguments its keys name (an absent or ``None`` key keeps that argument);
- the next impl is called with the arguments as replaced so far;
- the last impl that returned a value has the final word.

A trigger without a return calls every impl and ignores what they return.

Impls may be ``async def`` for every trigger fired inside the worker's or the app's asyncio
core; they run in the same chain as sync impls. A plugin that does I/O should be async: a
sync impl runs on the event loop and blocks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from qtasks_hooks.specs import (
    broker,
    changes,
    enqueue,
    global_config,
    qtasks,
    schedule,
    starter,
    stats,
    storage,
    task_executor,
    worker,
)

if TYPE_CHECKING:
    from types import ModuleType

#: The spec modules, in the order they are added to the plugin manager.
SPEC_MODULES: Final[tuple[ModuleType, ...]] = (
    qtasks,
    broker,
    global_config,
    task_executor,
    starter,
    storage,
    worker,
    stats,
)

#: Spec modules beyond the original's 52 triggers (``docs/TRIGGERS.md``), added after
#: :data:`SPEC_MODULES`.
EXTENSION_MODULES: Final[tuple[ModuleType, ...]] = (schedule, enqueue, changes)

__all__ = ["EXTENSION_MODULES", "SPEC_MODULES"]
