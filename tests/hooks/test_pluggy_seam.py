"""The one pluggy internal we rely on, checked so a pluggy upgrade fails loudly here."""

from __future__ import annotations

from typing import Any

import pluggy

from qtasks_hooks import get_plugin_manager, hookimpl
from qtasks_hooks._caller import ChainedCaller


def test_hook_calls_go_through_inner_hookexec() -> None:
    pm = get_plugin_manager()
    assert isinstance(pm._inner_hookexec, ChainedCaller)
    assert "_inner_hookexec" in vars(pluggy.PluginManager("probe"))


def test_tracing_still_wraps_the_chained_caller() -> None:
    pm = get_plugin_manager()
    calls: list[str] = []

    class Plugin:
        @hookimpl
        def broker_update(self, kw: dict[str, Any]) -> dict[str, Any]:
            return {**kw, "traced": True}

    pm.register(Plugin(), name="probe")
    undo = pm.add_hookcall_monitoring(
        lambda name, impls, kwargs: calls.append(f"before:{name}"),
        lambda outcome, name, impls, kwargs: calls.append(f"after:{name}"),
    )
    try:
        assert pm.hook.broker_update(broker=None, kw={"uuid": "u"}) == {
            "uuid": "u",
            "traced": True,
        }
    finally:
        undo()
    assert calls == ["before:broker_update", "after:broker_update"]


def test_triggers_without_impls_take_the_fast_path_and_with_impls_the_full_one() -> None:
    from qtasks_hooks._manager import _FastHookCaller

    pm = get_plugin_manager()
    caller = pm.hook.broker_update
    assert isinstance(caller, _FastHookCaller)
    assert "_hookimpls" in pluggy.HookCaller.__slots__
    assert caller(broker=None, kw={}) is None

    class Plugin:
        @hookimpl
        def broker_update(self, kw: dict[str, Any]) -> dict[str, Any]:
            return {"replaced": True}

    pm.register(Plugin())
    assert caller(broker=None, kw={}) == {"replaced": True}
