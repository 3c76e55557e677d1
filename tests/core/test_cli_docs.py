"""The command line's documentation covers every command: the README's table names
each one, and the reference page generated at each docs build shows each one's usage,
help and options."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
from typer.core import TyperGroup

from qtasks_core.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def docs_hooks() -> ModuleType:
    """The site's MkDocs hooks (docs/_hooks/qtasks_docs.py), loaded as mkdocs does."""
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location(
        "qtasks_docs", ROOT / "docs/_hooks/qtasks_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def commands() -> dict[str, Any]:
    """Every command of ``qtasks`` by its path (``add``, ``server start``)."""
    found: dict[str, Any] = {}

    def walk(group: Any, context: Any, prefix: str) -> None:
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            if command.hidden:
                continue
            if isinstance(command, TyperGroup):
                walk(command, typer.Context(command, info_name=name, parent=context), f"{name} ")
            else:
                found[prefix + name] = command

    root = typer.main.get_command(cli)
    walk(root, typer.Context(root, info_name="qtasks"), "")
    return found


def groups() -> set[str]:
    return {path.split()[0] for path in commands() if " " in path}


def test_the_readme_table_names_every_command_and_no_other() -> None:
    section = docs_hooks()._readme_sections()["The command line"]
    rows = [line for line in section.splitlines() if line.startswith("| `qtasks")]
    named = set()
    for span in re.findall(r"`qtasks ([^`]*)`", "\n".join(rows)):
        words = re.match(r"[a-z][a-z-]*(?: [a-z\\|-]+)?", span)
        assert words is not None, span
        first, _, rest = words[0].partition(" ")
        if first in groups():
            named |= {f"{first} {sub}" for sub in rest.split("\\|")}
        else:
            named.add(first)
    assert named == set(commands())


def test_the_generated_reference_shows_every_command_with_its_options() -> None:
    page = docs_hooks().cli_reference()
    sections = dict(
        re.findall(r"^### `qtasks ?([^`]*)`[^\n]*\n(.*?)(?=^### |\Z)", page, re.M | re.S)
    )
    assert set(sections) == {"", *commands()}
    for path, command in commands().items():
        assert f"Usage: qtasks {path}" in sections[path]
        assert (command.help or "").split("\n")[0] in sections[path]
        for param in command.params:
            for flag in param.opts:
                if flag.startswith("-"):
                    assert flag in sections[path], (path, flag)
    assert "--version" in sections[""]
