"""Meta-tests: the specs are exactly the reference's 52 triggers, each fully documented."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from qtasks_hooks import get_plugin_manager
from qtasks_hooks.specs import EXTENSION_MODULES, SPEC_MODULES

ROOT = Path(__file__).resolve().parents[2]
#: The original's triggers, as the project documents them.
REFERENCE = ROOT / "docs/TRIGGERS.md"


def reference_names(path: Path) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", path.read_text(), flags=re.MULTILINE))


def spec_functions() -> dict[str, object]:
    pm = get_plugin_manager()
    return {
        caller.name: caller.spec.function
        for caller in pm.hook.__dict__.values()
        if getattr(caller, "spec", None) is not None
    }


def extension_names() -> set[str]:
    return {
        name
        for module in EXTENSION_MODULES
        for name, f in vars(module).items()
        if getattr(f, "qtasks_spec", None) is not None
    }


def test_hookspecs_are_exactly_the_reference_triggers() -> None:
    names = reference_names(REFERENCE)
    assert len(names) == 52
    # The extensions (schedule_*) come on top, and never rename or drop one of the 52.
    assert set(spec_functions()) - extension_names() == names
    assert not extension_names() & names
    assert extension_names() == {
        "schedule_fired",
        "schedule_missed",
        "broker_add_failed",
        "storage_status_changed",
    }


def test_the_project_copy_of_the_reference_is_present() -> None:
    assert (ROOT / "docs/TRIGGERS.md").exists()


@pytest.mark.parametrize("name", sorted(spec_functions()))
def test_every_spec_documents_each_argument_and_its_return(name: str) -> None:
    function = spec_functions()[name]
    doc = inspect.getdoc(function) or ""
    params = [p for p in inspect.signature(function).parameters]  # type: ignore[arg-type]
    assert doc.split("\n", 1)[0].strip(), f"{name} has no summary line"
    for param in params:
        assert re.search(rf":param {param}:\s*\S", doc), f"{name} does not document {param!r}"
    assert re.search(r":return:\s*\S", doc), f"{name} does not document its return"


@pytest.mark.parametrize("name", sorted(spec_functions()))
def test_every_trigger_with_a_return_declares_how_it_replaces(name: str) -> None:
    pm = get_plugin_manager()
    caller = getattr(pm.hook, name)
    firstresult = bool(caller.spec.opts.get("firstresult"))
    assert firstresult == (pm.rule(name) is not None)
    if firstresult:
        rule = pm.rule(name)
        params = set(inspect.signature(caller.spec.function).parameters)
        # A replaced name is an argument, except the trigger_error result, which the
        # task never had because it raised.
        missing = [n for n in rule.names if n not in params]
        assert missing == [] or name == "task_executor_run_task_trigger_error"


def test_spec_modules_cover_one_component_each() -> None:
    prefixes = {m.__name__.rsplit(".", 1)[1] for m in SPEC_MODULES}
    assert prefixes == {
        "qtasks",
        "broker",
        "global_config",
        "task_executor",
        "starter",
        "storage",
        "worker",
        "stats",
    }


def test_the_plugin_guide_carries_the_current_trigger_reference() -> None:
    from qtasks_hooks.reference import BEGIN, END, render

    text = (ROOT / "docs/plugins.md").read_text()
    generated = text[text.index(BEGIN) : text.index(END) + len(END)] + "\n"
    assert generated == render(), "run: python -m qtasks_hooks.reference --write docs/plugins.md"
