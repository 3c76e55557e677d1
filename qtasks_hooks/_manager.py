"""The plugin manager: pluggy's, with every QTasks spec and the chained caller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy
from pluggy import HookCaller

from ._caller import ChainedCaller, Plan
from ._errors import PluginSpecError
from ._markers import PROJECT_NAME
from ._rules import ReplaceRule, rule_of


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What ``qtasks plugins`` shows for one registered plugin."""

    name: str
    hooks: tuple[str, ...]
    distribution: str | None = None
    version: str | None = None
    entry_point: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "hooks": list(self.hooks),
        }


class _FastHookCaller(HookCaller):
    """A hook caller whose call returns at once when no plugin implements the trigger.

    pluggy's ``HookCaller.__call__`` verifies arguments and copies the impl list on
    every call (~0.8 us); a trigger nobody implements is the common case on the hot
    path, so it costs one attribute test here. Reads ``_hookimpls``, a pluggy internal
    (checked by tests/hooks/test_pluggy_seam.py).
    """

    __slots__ = ()

    def __call__(self, **kwargs: object) -> Any:
        impls = self._hookimpls
        if not impls:
            return None
        manager = getattr(self._hookexec, "__self__", None)
        if type(manager) is PluginManager:
            chained: ChainedCaller = manager._chained
            traced = manager._inner_hookexec is not chained
            if not traced:
                # No tracing installed: the impls from the trigger's plan (built once
                # per registration change), without pluggy's copy of the list and its
                # dispatch through _hookexec.
                plan = manager._plans.get(self.name)
                if plan is None:
                    plan = manager._plan(self)
                return chained.run(self.name, plan, kwargs)
        # What pluggy's __call__ does, minus its per-call argument warning (our specs
        # are called by our own core with every argument): the copy protects the loop
        # from a plugin that registers another while it runs.
        firstresult = self.spec.opts.get("firstresult", False) if self.spec else False
        return self._hookexec(self.name, impls[:], kwargs, firstresult)


class PluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` whose hook calls chain replacements.

    Use :func:`get_plugin_manager` to get one with every QTasks spec added.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self._rules: dict[str, ReplaceRule] = {}
        self._entry_points: dict[str, tuple[str | None, str | None, str]] = {}
        # The one pluggy internal we touch (tested in tests/hooks/test_pluggy_seam.py):
        # HookCaller.__call__ -> PluginManager._hookexec -> self._inner_hookexec.
        # Replacing the innermost step keeps add_hookcall_monitoring/enable_tracing
        # working on top of the chained caller.
        self._chained = ChainedCaller(self._rules)
        self._inner_hookexec = self._chained  # type: ignore[assignment]
        #: Per trigger, its impls ready to call; emptied by every registration change.
        self._plans: dict[str, Plan] = {}
        self._watchers: list[Callable[[], None]] = []

    def watch_registrations(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every registration and unregistration: a component
        that does work only when a trigger has impls (the status changes) keeps up."""
        self._watchers.append(callback)

    def _plan(self, caller: HookCaller) -> Plan:
        firstresult = bool(caller.spec.opts.get("firstresult", False)) if caller.spec else False
        plan = self._chained.plan(caller.name, caller._hookimpls, firstresult)
        self._plans[caller.name] = plan
        return plan

    def _registrations_changed(self) -> None:
        self._plans.clear()
        for callback in self._watchers:
            callback()

    def add_hookspecs(self, module_or_class: ModuleType | type) -> None:
        """Add specs; a ``firstresult`` spec must declare how its return replaces."""
        rules: dict[str, ReplaceRule] = {}
        for name in dir(module_or_class):
            opts = self.parse_hookspec_opts(module_or_class, name)
            if not opts or not opts.get("firstresult"):
                continue
            rule = rule_of(getattr(module_or_class, name))
            if rule is None:
                raise PluginSpecError(
                    f"hookspec {name!r} is firstresult but declares no replace rule "
                    "(decorate it with replaces_value/replaces_keys/replaces_pair)"
                )
            rules[name] = rule
        # Validation before mutation: a bad module adds nothing.
        super().add_hookspecs(module_or_class)
        self._rules.update(rules)
        self._plans.clear()
        for name in dir(module_or_class):
            caller = getattr(self.hook, name, None)
            if type(caller) is HookCaller:
                caller.__class__ = _FastHookCaller

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register a plugin (module, class or instance) under ``name``.

        Hook wrappers are refused: a wrapper cannot see the chained arguments, so it
        would silently observe stale values.
        """
        plugin_name = super().register(plugin, name)
        if plugin_name is None:
            return None
        for caller in self.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper):
                    self.unregister(plugin)
                    raise PluginSpecError(
                        f"plugin {plugin_name!r} declares {caller.name!r} as a hook "
                        "wrapper; QTasks triggers chain plain impls only (use "
                        "tryfirst/trylast to order them)"
                    )
        self._registrations_changed()
        return plugin_name

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any | None:
        """Unregister a plugin (by object or name); its impls are never called again."""
        removed = super().unregister(plugin, name)
        self._chained.invokers.clear()
        self._registrations_changed()
        return removed

    def note_entry_point(
        self, name: str, distribution: str | None, version: str | None, value: str
    ) -> None:
        """Remember where an entry-point plugin came from, for listings and errors."""
        self._entry_points[name] = (distribution, version, value)

    def distribution_of(self, name: str) -> str | None:
        """The distribution an entry-point plugin came from, or ``None``."""
        return self._entry_points.get(name, (None, None, ""))[0]

    def plugin_infos(self) -> list[PluginInfo]:
        """Every registered plugin with the triggers it implements, sorted by name."""
        infos = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue  # blocked names stay in pluggy's registry as None
            hooks = sorted(caller.name for caller in self.get_hookcallers(plugin) or ())
            dist, version, value = self._entry_points.get(name, (None, None, None))
            infos.append(PluginInfo(name, tuple(hooks), dist, version, value))
        return sorted(infos, key=lambda info: info.name)

    def rule(self, trigger: str) -> ReplaceRule | None:
        """The replace rule of ``trigger``, or ``None`` for a trigger without a return."""
        return self._rules.get(trigger)


def get_plugin_manager(*, specs: tuple[ModuleType, ...] | None = None) -> PluginManager:
    """A new manager with every QTasks spec added, and no plugin registered."""
    from .specs import EXTENSION_MODULES, SPEC_MODULES

    manager = PluginManager()
    for module in specs if specs is not None else (*SPEC_MODULES, *EXTENSION_MODULES):
        manager.add_hookspecs(module)
    return manager
