"""The chaining rules of the chained caller (qtasks_hooks._caller), one test each, on a
small spec module."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pluggy
import pytest

from qtasks_hooks import (
    PluginAsyncError,
    PluginManager,
    PluginReturnError,
    PluginSpecError,
    hookimpl,
    hookspec,
    replaces_keys,
    replaces_pair,
    replaces_value,
)


class Model:
    """Stands for a pydantic model: the caller only checks for ``model_dump``."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def model_dump(self) -> dict[str, str]:
        return {"tag": self.tag}


class Specs:
    @hookspec(firstresult=True)
    @replaces_value("model", shape="model")
    def on_model(self, component: Any, model: Model) -> Model | None:
        """"""

    @hookspec(firstresult=True)
    @replaces_keys("args", "kw")
    def on_args(self, component: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        """"""

    @hookspec(firstresult=True)
    @replaces_pair("args", "kw")
    def on_pair(self, component: Any, args: list[Any], kw: dict[str, Any]) -> Any:
        """"""

    @hookspec
    def on_event(self, component: Any, seen: list[str]) -> None:
        """"""


@pytest.fixture
def pm() -> PluginManager:
    manager = PluginManager()
    manager.add_hookspecs(Specs)
    return manager


def plugin(name: str, **impls: Any) -> types.SimpleNamespace:
    """A namespace plugin whose attributes are hookimpl-marked functions."""
    ns = types.SimpleNamespace(__name__=name)
    for hook, func in impls.items():
        setattr(ns, hook, hookimpl(func) if not hasattr(func, "qtasks_impl") else func)
    return ns


def test_no_impls_returns_none(pm: PluginManager) -> None:
    assert pm.hook.on_model(component=1, model=Model("a")) is None


def test_none_keeps_the_value(pm: PluginManager) -> None:
    pm.register(plugin("p", on_model=lambda model: None))
    assert pm.hook.on_model(component=1, model=Model("a")) is None


def test_a_value_replaces(pm: PluginManager) -> None:
    new = Model("b")
    pm.register(plugin("p", on_model=lambda model: new))
    assert pm.hook.on_model(component=1, model=Model("a")) is new


def test_next_impl_sees_the_previous_value(pm: PluginManager) -> None:
    seen = []

    def first(model: Model) -> Model:
        return Model(model.tag + "1")

    def second(model: Model) -> Model:
        seen.append(model.tag)
        return Model(model.tag + "2")

    # Among plain impls the last registered runs first.
    pm.register(plugin("second", on_model=second))
    pm.register(plugin("first", on_model=first))
    result = pm.hook.on_model(component=1, model=Model("a"))
    assert seen == ["a1"]
    assert result.tag == "a12"


def test_last_value_set_wins_and_none_after_it_keeps_it(pm: PluginManager) -> None:
    pm.register(plugin("late_none", on_model=lambda model: None))
    pm.register(plugin("setter", on_model=lambda model: Model("set")))
    assert pm.hook.on_model(component=1, model=Model("a")).tag == "set"


def test_dict_return_merges_per_key_and_none_parts_keep(pm: PluginManager) -> None:
    pm.register(plugin("only_kw", on_args=lambda args, kw: {"args": None, "kw": {"x": 2}}))
    pm.register(plugin("only_args", on_args=lambda args, kw: {"args": (9,)}))
    # only_args runs first, only_kw second: args set by the first survives the None.
    assert pm.hook.on_args(component=1, args=(1,), kw={"x": 1}) == {"args": (9,), "kw": {"x": 2}}


def test_dict_return_with_all_none_replaces_nothing(pm: PluginManager) -> None:
    pm.register(plugin("p", on_args=lambda: {"args": None, "kw": None}))
    assert pm.hook.on_args(component=1, args=(1,), kw={}) is None


def test_pair_return_replaces_both_and_none_part_keeps(pm: PluginManager) -> None:
    pm.register(plugin("p", on_pair=lambda args, kw: (None, {**kw, "y": 1})))
    assert pm.hook.on_pair(component=1, args=[1], kw={}) == ([1], {"y": 1})


def test_tryfirst_and_trylast_order(pm: PluginManager) -> None:
    order: list[str] = []

    def make(tag: str, **opts: bool) -> Any:
        def impl(seen: list[str]) -> None:
            seen.append(tag)

        return hookimpl(**opts)(impl)

    pm.register(plugin("last", on_event=make("last", trylast=True)))
    pm.register(plugin("plain1", on_event=make("plain1")))
    pm.register(plugin("first", on_event=make("first", tryfirst=True)))
    pm.register(plugin("plain2", on_event=make("plain2")))
    assert pm.hook.on_event(component=1, seen=order) is None
    assert order == ["first", "plain2", "plain1", "last"]


def test_impl_may_take_a_subset_of_arguments(pm: PluginManager) -> None:
    got: list[Any] = []
    pm.register(plugin("p", on_args=lambda kw: got.append(kw)))
    pm.hook.on_args(component=1, args=(1,), kw={"k": 1})
    assert got == [{"k": 1}]


def test_specname_keeps_working(pm: PluginManager) -> None:
    @hookimpl(specname="on_model")
    def anything(model: Model) -> Model:
        return Model("via-specname")

    pm.register(plugin("p", whatever=anything))
    assert pm.hook.on_model(component=1, model=Model("a")).tag == "via-specname"


def test_trigger_without_return_calls_every_impl_and_ignores_values(
    pm: PluginManager,
) -> None:
    seen: list[str] = []
    pm.register(plugin("a", on_event=lambda seen: seen.append("a") or "ignored"))
    pm.register(plugin("b", on_event=lambda seen: seen.append("b")))
    assert pm.hook.on_event(component=1, seen=seen) is None
    assert sorted(seen) == ["a", "b"]


def test_the_callers_arguments_are_not_mutated(pm: PluginManager) -> None:
    kwargs: dict[str, Any] = {"component": 1, "args": (1,), "kw": {}}
    pm.register(plugin("p", on_args=lambda: {"args": (2,)}))
    pm.hook.on_args(**kwargs)
    assert kwargs["args"] == (1,)


def test_async_and_sync_impls_chain_in_order(pm: PluginManager) -> None:
    calls: list[str] = []

    def sync_first(model: Model) -> Model:
        calls.append(f"sync1:{model.tag}")
        return Model(model.tag + "s")

    async def async_middle(model: Model) -> Model:
        await asyncio.sleep(0)
        calls.append(f"async:{model.tag}")
        return Model(model.tag + "a")

    def sync_last(model: Model) -> None:
        calls.append(f"sync2:{model.tag}")

    pm.register(plugin("sync_last", on_model=sync_last))
    pm.register(plugin("async_middle", on_model=async_middle))
    pm.register(plugin("sync_first", on_model=sync_first))

    async def fire() -> Any:
        pending = pm.hook.on_model(component=1, model=Model("m"))
        return await pending

    result = asyncio.run(fire())
    assert result.tag == "msa"
    assert calls == ["sync1:m", "async:ms", "sync2:msa"]


def test_sync_impl_returning_an_awaitable_is_awaited(pm: PluginManager) -> None:
    async def later(seen: list[str]) -> None:
        seen.append("awaited")

    pm.register(plugin("p", on_event=lambda seen: later(seen)))
    seen: list[str] = []

    async def fire() -> None:
        await pm.hook.on_event(component=1, seen=seen)

    asyncio.run(fire())
    assert seen == ["awaited"]


def test_async_impl_at_a_sync_call_site_fails_naming_the_plugin(pm: PluginManager) -> None:
    async def impl(model: Model) -> None:
        return None

    pm.register(plugin("my_async_plugin", on_model=impl))
    with pytest.raises(PluginAsyncError, match=r"my_async_plugin.*on_model"):
        pm.hook.on_model(component=1, model=Model("a"))


def test_plugin_exception_keeps_its_type_and_names_plugin_and_trigger(
    pm: PluginManager,
) -> None:
    def boom(model: Model) -> None:
        raise KeyError("inner")

    pm.register(plugin("exploding", on_model=boom))
    with pytest.raises(KeyError) as info:
        pm.hook.on_model(component=1, model=Model("a"))
    assert info.value.__notes__ == ["raised by plugin 'exploding' in trigger 'on_model'"]


def test_async_plugin_exception_names_plugin_and_trigger(pm: PluginManager) -> None:
    async def boom(model: Model) -> None:
        raise ValueError("nope")

    pm.register(plugin("async_boom", on_model=boom))

    async def fire() -> Any:
        return await pm.hook.on_model(component=1, model=Model("a"))

    with pytest.raises(ValueError) as info:
        asyncio.run(fire())
    assert "raised by plugin 'async_boom' in trigger 'on_model'" in info.value.__notes__


@pytest.mark.parametrize(
    ("hook", "value", "expected"),
    [
        ("on_model", {"model": "x"}, "pydantic model"),
        ("on_args", ("a",), "dict with some of the keys"),
        ("on_args", {"arg": 1}, r"not \['arg'\]"),
        ("on_pair", {"args": []}, "2-tuple"),
    ],
)
def test_wrong_return_shape_names_plugin_and_trigger(
    pm: PluginManager, hook: str, value: Any, expected: str
) -> None:
    pm.register(plugin("shapeless", **{hook: lambda: value}))
    kwargs: dict[str, Any] = {"component": 1}
    kwargs.update({"model": Model("a")} if hook == "on_model" else {"args": (), "kw": {}})
    with pytest.raises(PluginReturnError, match=f"shapeless.*{hook}.*{expected}"):
        getattr(pm.hook, hook)(**kwargs)


def test_hook_wrappers_are_refused(pm: PluginManager) -> None:
    @hookimpl(wrapper=True)
    def on_event(seen: list[str]) -> Any:
        return (yield)

    with pytest.raises(PluginSpecError, match="wrapper"):
        pm.register(plugin("wrapping", on_event=on_event))
    assert not pm.has_plugin("wrapping")


def test_firstresult_spec_without_a_rule_is_refused() -> None:
    class Bad:
        @hookspec(firstresult=True)
        def no_rule(self, x: int) -> int | None:
            """"""

    with pytest.raises(PluginSpecError, match="no_rule"):
        PluginManager().add_hookspecs(Bad)


def test_a_plugins_own_key_error_is_its_own_not_a_missing_argument(pm: PluginManager) -> None:
    class Lookup:
        @hookimpl
        def on_event(self, seen: list[str]) -> None:
            {}["absent"]

    pm.register(Lookup(), name="lookup")
    with pytest.raises(KeyError) as raised:
        pm.hook.on_event(component=None, seen=[])
    assert raised.value.__notes__ == ["raised by plugin 'lookup' in trigger 'on_event'"]


def test_a_trigger_fired_without_an_argument_an_impl_asks_for_names_both(
    pm: PluginManager,
) -> None:
    class Wants:
        @hookimpl
        def on_event(self, component: Any, seen: list[str]) -> None:
            seen.append("ran")

    pm.register(Wants(), name="wants")
    with pytest.raises(pluggy.HookCallError, match=r"without argument\(s\) \['seen'\].*'wants'"):
        pm.hook.on_event(component=None)


def test_impls_take_no_arguments_one_or_many(pm: PluginManager) -> None:
    seen: list[str] = []

    class Shapes:
        @hookimpl
        def on_event(self) -> None:
            seen.append("none")

    class One:
        @hookimpl
        def on_event(self, seen: list[str]) -> None:
            seen.append("one")

    class Both:
        @hookimpl
        def on_event(self, seen: list[str], component: Any) -> None:
            seen.append(f"both {component}")

    for plugin in (Shapes(), One(), Both()):
        pm.register(plugin)
    pm.hook.on_event(component="c", seen=seen)
    assert sorted(seen) == ["both c", "none", "one"]


def test_an_unregistered_plugin_is_not_called_again(pm: PluginManager) -> None:
    seen: list[str] = []

    class Once:
        @hookimpl
        def on_event(self, seen: list[str]) -> None:
            seen.append("once")

    plugin = Once()
    pm.register(plugin, name="once")
    pm.hook.on_event(component=None, seen=seen)
    pm.unregister(plugin)
    pm.hook.on_event(component=None, seen=seen)
    pm.register(Once(), name="again")
    pm.hook.on_event(component=None, seen=seen)
    assert seen == ["once", "once"]


def test_a_plugin_registered_by_an_impl_joins_from_the_next_call(pm: PluginManager) -> None:
    seen: list[str] = []

    class Late:
        @hookimpl
        def on_event(self, seen: list[str]) -> None:
            seen.append("late")

    class Registrar:
        @hookimpl
        def on_event(self, seen: list[str]) -> None:
            seen.append("registrar")
            if pm.get_plugin("late") is None:
                pm.register(Late(), name="late")

    pm.register(Registrar(), name="registrar")
    pm.hook.on_event(component=None, seen=seen)
    assert seen == ["registrar"]  # the call's impls are those it started with
    seen.clear()
    pm.hook.on_event(component=None, seen=seen)
    assert sorted(seen) == ["late", "registrar"]


def test_blocking_a_plugin_stops_its_impls_at_once(pm: PluginManager) -> None:
    seen: list[str] = []

    class Noisy:
        @hookimpl
        def on_event(self, seen: list[str]) -> None:
            seen.append("noisy")

    pm.register(Noisy(), name="noisy")
    pm.hook.on_event(component=None, seen=seen)
    pm.set_blocked("noisy")
    pm.hook.on_event(component=None, seen=seen)
    assert seen == ["noisy"]
