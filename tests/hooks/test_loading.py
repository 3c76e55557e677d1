"""Entry-point loading, for real: a small distribution written onto ``sys.path``."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qtasks_hooks import (
    PluginLoadError,
    get_plugin_manager,
    load_plugins,
    selected_entry_points,
)

GROUP = "qtasks.plugins"

GOOD = """
from qtasks_hooks import hookimpl

@hookimpl
def broker_add_before(model):
    return None
"""

MISSPELT = """
from qtasks_hooks import hookimpl

@hookimpl
def broker_add_befor(model):
    return None
"""


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Write distributions into a folder on sys.path, as pip would install them."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("QTASKS_PLUGINS", raising=False)
    monkeypatch.delenv("QTASKS_DISABLE_PLUGINS", raising=False)
    modules: list[str] = []

    def write(dist: str, ep_name: str, module: str, source: str, value: str = "") -> None:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[{GROUP}]\n{ep_name} = {value or module}\n")
        modules.append(module)
        importlib.invalidate_caches()

    yield write
    for module in modules:
        sys.modules.pop(module, None)


def test_entry_point_plugins_load_sorted_with_their_distribution(install) -> None:
    install("zeta-dist", "zeta", "zeta_plugin", GOOD)
    install("alpha-dist", "alpha", "alpha_plugin", GOOD)
    pm = get_plugin_manager()
    assert load_plugins(pm) == ["alpha", "zeta"]
    infos = {info.name: info for info in pm.plugin_infos()}
    assert infos["alpha"].distribution == "alpha-dist"
    assert infos["alpha"].version == "1.2.3"
    assert infos["alpha"].hooks == ("broker_add_before",)


def test_loading_twice_is_a_no_op(install) -> None:
    install("alpha-dist", "alpha", "alpha_plugin", GOOD)
    pm = get_plugin_manager()
    assert load_plugins(pm) == ["alpha"]
    assert load_plugins(pm) == []


def test_nothing_is_loaded_until_asked(install) -> None:
    install("alpha-dist", "alpha", "alpha_plugin", GOOD)
    assert get_plugin_manager().plugin_infos() == []
    assert "alpha_plugin" not in sys.modules


def test_allow_list_from_environment_and_argument(install, monkeypatch) -> None:
    install("alpha-dist", "alpha", "alpha_plugin", GOOD)
    install("beta-dist", "beta", "beta_plugin", GOOD)
    monkeypatch.setenv("QTASKS_PLUGINS", "beta")
    assert [ep.name for ep in selected_entry_points()] == ["beta"]
    monkeypatch.setenv("QTASKS_PLUGINS", "")
    assert selected_entry_points() == []
    assert load_plugins(get_plugin_manager(), allow=["alpha"]) == ["alpha"]


def test_block_list_from_environment_and_argument(install, monkeypatch) -> None:
    install("alpha-dist", "alpha", "alpha_plugin", GOOD)
    install("beta-dist", "beta", "beta_plugin", GOOD)
    install("gamma-dist", "gamma", "gamma_plugin", GOOD)
    monkeypatch.setenv("QTASKS_DISABLE_PLUGINS", "alpha, gamma")
    assert load_plugins(get_plugin_manager()) == ["beta"]
    monkeypatch.delenv("QTASKS_DISABLE_PLUGINS")
    assert load_plugins(get_plugin_manager(), block=["beta"]) == ["alpha", "gamma"]


def test_a_broken_entry_point_names_itself_and_its_distribution(install) -> None:
    install("broken-dist", "broken", "broken_plugin", "raise RuntimeError('bad import')\n")
    with pytest.raises(PluginLoadError, match=r"'broken'.*broken-dist.*bad import"):
        load_plugins(get_plugin_manager())


def test_a_missing_attribute_names_the_entry_point(install) -> None:
    install("attr-dist", "attr", "attr_plugin", GOOD, value="attr_plugin:nowhere")
    with pytest.raises(PluginLoadError, match=r"'attr'.*attr_plugin:nowhere.*attr-dist"):
        load_plugins(get_plugin_manager())


def test_a_misspelt_trigger_fails_at_start_up_with_the_plugin_name(install) -> None:
    install("typo-dist", "typo", "typo_plugin", MISSPELT)
    with pytest.raises(PluginLoadError, match=r"'typo'.*typo-dist.*broker_add_befor"):
        load_plugins(get_plugin_manager())
