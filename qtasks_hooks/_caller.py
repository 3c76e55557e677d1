"""The chained caller: how ``pm.hook.<trigger>(...)`` runs a trigger's impls.

Installed by :class:`qtasks_hooks.PluginManager` in place of pluggy's ``_multicall``.
Rules:

- impls run in pluggy's order (``tryfirst`` … ``trylast``; among plain impls the last
  registered runs first);
- for a trigger with a :class:`~qtasks_hooks._rules.ReplaceRule`, an impl returns
  ``None`` (keep) or a replacement; the replacement is applied to the call's arguments
  before the next impl runs, so each impl sees what the previous ones set;
- the call returns the chained replacement (the last value set; for a ``keys`` rule the
  merged dict of every key set) or ``None`` when nothing was replaced;
- for a trigger without a rule every impl runs and results are ignored (``None``);
- an impl may be ``async def`` (or return any awaitable): inside a running event loop
  the call then returns an awaitable that finishes the chain in order; outside one it
  raises :class:`PluginAsyncError` naming the plugin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from inspect import isawaitable
from operator import itemgetter
from typing import Any, Final

from pluggy import HookCallError, HookImpl

from ._errors import PluginAsyncError, PluginReturnError
from ._rules import ReplaceRule

_UNSET: Final = object()


class ChainedCaller:
    """Callable with pluggy's ``_inner_hookexec`` signature that chains replacements."""

    __slots__ = ("invokers", "rules")

    def __init__(self, rules: Mapping[str, ReplaceRule]) -> None:
        self.rules: Final = rules
        #: Per impl, how to call it (see _Invoker); cleared by the plugin manager when
        #: a plugin is unregistered.
        self.invokers: Final[dict[HookImpl, _Invoker]] = {}

    def __call__(
        self,
        hook_name: str,
        methods: Sequence[HookImpl],
        kwargs: Mapping[str, object],
        firstresult: bool,
    ) -> Any:
        """pluggy's ``_inner_hookexec``: the path of a traced call (the plugin manager
        calls the impls from its cached plans otherwise)."""
        if not methods:
            # The fast path: a trigger nobody implements costs one call and a test.
            return None
        return self.run(hook_name, self.plan(hook_name, methods, firstresult), kwargs)

    def plan(self, hook_name: str, methods: Sequence[HookImpl], firstresult: bool) -> Plan:
        """The plan of a call of ``hook_name`` to ``methods`` (pluggy's order)."""
        return Plan(methods, firstresult, self.rules.get(hook_name), self.invokers)

    def run(self, hook_name: str, plan: Plan, kwargs: Mapping[str, object]) -> Any:
        """Call each impl of ``plan``; only a result (a replacement, or an awaitable to
        finish asynchronously and in order) needs the full chain. For a trigger without
        a rule, plain values are ignored by contract."""
        for function, get, arity, index in plan.calls:
            try:
                result = function(get(kwargs)) if arity == 1 else function(*get(kwargs))
            except Exception as exc:
                impl = plan.methods[index]
                if _failed(exc, impl, kwargs, hook_name) is exc:
                    raise
                raise _missing(impl, kwargs, hook_name) from None
            if result is None:
                continue
            if isawaitable(result):
                chain = _Chain(hook_name, plan.methods, kwargs, plan.rule, self.invokers)
                return chain._go_async(plan.methods[index], result, index)
            if plan.rule is not None:
                chain = _Chain(hook_name, plan.methods, kwargs, plan.rule, self.invokers)
                chain._absorb(plan.methods[index], result)
                return chain.run(index - 1)
        return None


class Plan:
    """A trigger's impls, ready to call: kept by the plugin manager per trigger until
    the next registration change, so that a call neither copies the impl list nor
    looks up how to call each impl."""

    __slots__ = ("calls", "methods", "rule")

    def __init__(
        self,
        methods: Sequence[HookImpl],
        firstresult: bool,
        rule: ReplaceRule | None,
        invokers: dict[HookImpl, _Invoker],
    ) -> None:
        #: A snapshot, in pluggy's order (a plugin registered during a call does not
        #: change the call's impls, as pluggy's copy of the list ensures).
        self.methods: Final = tuple(methods)
        self.rule: Final = rule if firstresult else None
        calls = []
        for index in range(len(methods) - 1, -1, -1):
            impl = methods[index]
            invoker = invokers.get(impl)
            if invoker is None:
                invoker = invokers[impl] = _invoker(impl)
            calls.append((*invoker, index))
        #: (function, argument getter, arity, index in methods), in call order.
        self.calls: Final = tuple(calls)


class _Chain:
    __slots__ = ("hook_name", "impls", "invokers", "kwargs", "owned", "replaced", "rule")

    def __init__(
        self,
        hook_name: str,
        impls: Sequence[HookImpl],
        kwargs: Mapping[str, object],
        rule: ReplaceRule | None,
        invokers: dict[HookImpl, _Invoker],
    ) -> None:
        self.hook_name = hook_name
        self.impls = impls
        self.invokers = invokers
        # Copied on the first replacement (_set): the caller's mapping is never changed,
        # and a chain in which every impl keeps pays for no copy.
        self.kwargs: Mapping[str, Any] = kwargs
        self.owned = False
        self.rule = rule
        self.replaced: Any = _UNSET

    def run(self, start: int) -> Any:
        """Run the impls from ``start`` down to 0 and return the outcome."""
        # pluggy keeps impls in reverse call order (see pluggy._callers._multicall).
        for index in range(start, -1, -1):
            impl = self.impls[index]
            result = self._call(impl)
            if result is None:
                continue
            if isawaitable(result):
                return self._go_async(impl, result, index)
            self._absorb(impl, result)
        return self._outcome()

    def _outcome(self) -> Any:
        return None if self.replaced is _UNSET else self.replaced

    def _go_async(self, impl: HookImpl, pending: Awaitable[Any], index: int) -> Any:
        # Imported here, where an async impl has answered (and so asyncio is loaded
        # already, or the call fails): a plugin module that imports the markers does
        # not pay for asyncio.
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if hasattr(pending, "close"):
                pending.close()  # no "coroutine was never awaited" warning on top
            raise PluginAsyncError(
                f"plugin {impl.plugin_name!r} implements trigger {self.hook_name!r} "
                "with an async function, but the trigger was fired outside a running "
                "event loop; make the impl a plain function or fire it from async code"
            ) from None
        return self._finish_async(impl, pending, index)

    async def _finish_async(self, impl: HookImpl, pending: Awaitable[Any], index: int) -> Any:
        result = await self._annotated(impl, pending)
        if result is not None:
            self._absorb(impl, result)
        for later in range(index - 1, -1, -1):
            impl = self.impls[later]
            result = self._call(impl)
            if isawaitable(result):
                result = await self._annotated(impl, result)
            if result is not None:
                self._absorb(impl, result)
        return self._outcome()

    async def _annotated(self, impl: HookImpl, pending: Awaitable[Any]) -> Any:
        try:
            return await pending
        except Exception as exc:
            _name_the_plugin(exc, impl, self.hook_name)
            raise

    def _call(self, impl: HookImpl) -> Any:
        return _call(impl, self.kwargs, self.hook_name, self.invokers)

    def _set(self, name: str, value: Any) -> None:
        if not self.owned:
            self.kwargs = dict(self.kwargs)
            self.owned = True
        self.kwargs[name] = value  # type: ignore[index]

    def _absorb(self, impl: HookImpl, result: Any) -> None:
        rule = self.rule
        if rule is None:
            return  # a trigger without a return: values are ignored by contract
        if rule.kind == "value":
            self._absorb_value(impl, rule, result)
        elif rule.kind == "keys":
            self._absorb_keys(impl, rule, result)
        else:
            self._absorb_pair(impl, rule, result)

    def _absorb_value(self, impl: HookImpl, rule: ReplaceRule, result: Any) -> None:
        shape = rule.shape
        ok = (
            shape == "any"
            or (shape == "dict" and isinstance(result, Mapping))
            or (shape == "list" and isinstance(result, (list, tuple)))
            or (shape in ("model", "model_or_none") and hasattr(result, "model_dump"))
        )
        if not ok:
            raise self._wrong_shape(impl, result, _SHAPE_WORDS[shape].format(rule.names[0]))
        self._set(rule.names[0], result)
        self.replaced = result

    def _absorb_keys(self, impl: HookImpl, rule: ReplaceRule, result: Any) -> None:
        if not isinstance(result, Mapping):
            raise self._wrong_shape(
                impl, result, f"a dict with some of the keys {list(rule.names)}"
            )
        unknown = [key for key in result if key not in rule.names]
        if unknown:
            raise self._wrong_shape(
                impl,
                result,
                f"a dict with some of the keys {list(rule.names)}, not {unknown}",
            )
        merged = {} if self.replaced is _UNSET else self.replaced
        for key, value in result.items():
            # A None part keeps that argument: the reference's rule, and what stops a
            # plugin that only sets `kw` from wiping the task's `args`.
            if value is not None:
                self._set(key, value)
                merged[key] = value
        if merged:
            self.replaced = merged

    def _absorb_pair(self, impl: HookImpl, rule: ReplaceRule, result: Any) -> None:
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            expected = f"a 2-tuple ({rule.names[0]}, {rule.names[1]})"
            if isinstance(result, Mapping) and set(result) <= set(rule.names):
                # The original QTasks' shape for this trigger: show its translation.
                first, second = rule.names
                expected += (
                    f"; write `return {first}, {second}` (None keeps one) instead of the "
                    f"original QTasks' `return {{{first!r}: ..., {second!r}: ...}}`"
                )
            raise self._wrong_shape(impl, result, expected)
        first, second = rule.names
        if result[0] is not None:
            self._set(first, result[0])
        if result[1] is not None:
            self._set(second, result[1])
        if result[0] is not None or result[1] is not None:
            self.replaced = (self.kwargs[first], self.kwargs[second])
            for name, compute in rule.refresh:
                self._set(name, compute(self.kwargs))

    def _wrong_shape(self, impl: HookImpl, result: Any, expected: str) -> PluginReturnError:
        return PluginReturnError(
            f"plugin {impl.plugin_name!r} returned {type(result).__name__} "
            f"{_short(result)} from trigger {self.hook_name!r}; expected None or {expected}"
        )


_SHAPE_WORDS: Final = {
    "any": "a new {}",
    "dict": "a dict, the new {}",
    "list": "a list, the new {}",
    "model": "a pydantic model, the new {}",
    "model_or_none": "a pydantic model, the new {}",
}


#: How an impl is called: its function, an ``itemgetter`` of the arguments it asks
#: for (picked in C: a list comprehension per call cost more than the impl itself),
#: and how many there are (one name: the getter returns the value itself).
_Invoker = tuple[Callable[..., Any], Callable[[Mapping[str, Any]], Any], int]


def _invoker(impl: HookImpl) -> _Invoker:
    names = impl.argnames
    get = itemgetter(*names) if names else _no_args
    return impl.function, get, len(names)


def _no_args(kwargs: Mapping[str, Any]) -> tuple[()]:
    return ()


def _call(
    impl: HookImpl,
    kwargs: Mapping[str, Any],
    hook_name: str,
    invokers: dict[HookImpl, _Invoker],
) -> Any:
    invoker = invokers.get(impl)
    if invoker is None:
        invoker = invokers[impl] = _invoker(impl)
    function, get, arity = invoker
    try:
        return function(get(kwargs)) if arity == 1 else function(*get(kwargs))
    except Exception as exc:
        if _failed(exc, impl, kwargs, hook_name) is exc:
            raise
        raise _missing(impl, kwargs, hook_name) from None


def _failed(
    exc: Exception, impl: HookImpl, kwargs: Mapping[str, Any], hook_name: str
) -> Exception | None:
    """After ``exc`` from calling ``impl``: ``None`` when the trigger lacks an argument
    the impl asks for (raise :func:`_missing`), else ``exc``, noted with the plugin."""
    if isinstance(exc, KeyError) and any(name not in kwargs for name in impl.argnames):
        return None
    _name_the_plugin(exc, impl, hook_name)
    return exc


def _missing(impl: HookImpl, kwargs: Mapping[str, Any], hook_name: str) -> HookCallError:
    missing = [name for name in impl.argnames if name not in kwargs]
    return HookCallError(
        f"trigger {hook_name!r} was fired without argument(s) {missing} "
        f"that plugin {impl.plugin_name!r} asks for"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _name_the_plugin(exc: Exception, impl: HookImpl, hook_name: str) -> None:
    note = f"raised by plugin {impl.plugin_name!r} in trigger {hook_name!r}"
    # A plugin that fires another trigger re-raises through this frame too; one note
    # per (plugin, trigger) is enough.
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)
