"""MkDocs hooks of the QTasks site (``hooks:`` in ``mkdocs.yml``).

- The trigger reference (``reference/triggers.md``) is generated at every build from
  the hookspecs (``qtasks_hooks.reference.render``): the site cannot drift from the
  specs, and no copy of it is checked in for the site.
- The README stays the one source of what it says: a page includes one of its
  sections with ``<!-- readme: Section title -->`` (``(intro)``: the text above its
  first section), or some of its blocks with
  ``<!-- readme: Section title > "first words" -->`` (the block that starts so) or
  ``<!-- readme: Section title > "first words" .. "stop words" -->`` (up to, not
  including, the block that starts with the stop words). A section or block that is
  not found fails the build, so a renamed heading cannot leave a page empty.
- The command line's reference (``<!-- cli: commands -->`` in ``reference/cli.md``) is
  generated at every build from the Typer app (``typer.main.get_command``): each
  command's usage, help and options, as ``qtasks COMMAND --help`` prints them.
- ``docs/plugins.md`` keeps its checked-in copy of the reference for readers of the
  repository (a test keeps it in sync); on the site that copy gives way to a link to
  the generated page.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

from qtasks_hooks.reference import BEGIN, END, render
from qtasks_hooks.specs import __doc__ as SPECS_DOC

TRIGGERS_PAGE = "reference/triggers.md"
CLI_PAGE = "reference/cli.md"
CLI_MARKER = "<!-- cli: commands -->"
ROOT = Path(__file__).resolve().parents[2]

_DIRECTIVE = re.compile(
    r'<!-- readme: (?P<section>[^>"]+?)\s*(?:> "(?P<start>[^"]+)"(?: \.\. "(?P<stop>[^"]+)")?)? -->'
)
_TRIGGER_HEADING = re.compile(
    r"^### `(?P<name>\w+)\((?P<params>[^)]*)\)`  \((?P<returns>[^)]*\]|no return)\)$",
    re.MULTILINE,
)
_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):`~?(?P<target>[^`]+)`")
_README_LINK = re.compile(r"\]\(docs/(?P<target>[^)]+)\)")


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, TRIGGERS_PAGE, content=_triggers_page()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    src = page.file.src_uri
    if src == "plugins.md":
        markdown = _link_generated_reference(markdown)
    if src == CLI_PAGE:
        if CLI_MARKER not in markdown:
            raise PluginError(f"docs/{CLI_PAGE} lost its marker {CLI_MARKER}")
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return _DIRECTIVE.sub(lambda match: _include(match, src), markdown)


def _triggers_page() -> str:
    """The generated reference, its headings one level up (it is a page of its own),
    each trigger's heading its bare name (the anchor: ``triggers.md#worker_start``)
    with the signature and the return rule under it."""
    body = render().replace(BEGIN, "").replace(END, "")
    triggers = len(re.findall(r"^#### ", body, flags=re.MULTILINE))
    body = re.sub(r"^#(#+) ", r"\1 ", body, flags=re.MULTILINE)
    if len(_TRIGGER_HEADING.findall(body)) != triggers:
        raise PluginError(
            "qtasks_hooks.reference.render() changed its trigger headings: update "
            "_TRIGGER_HEADING in docs/_hooks/qtasks_docs.py"
        )
    body = _TRIGGER_HEADING.sub(
        lambda m: (
            f"### `{m['name']}` {{#{m['name']}}}\n\n`{m['name']}({m['params']})` — {m['returns']}"
        ),
        body,
    )
    intro = "\n".join(line.strip() for line in (SPECS_DOC or "").splitlines())
    intro = _ROLE.sub(lambda m: f"`{m['target'].rsplit('.', 1)[-1]}`", intro)
    return (
        "# Trigger reference\n\n"
        "Generated from the hookspecs in `qtasks_hooks/specs/` when this site was built: "
        "each entry is the spec's signature and docstring. How to write the impls is in "
        "[Plugins](../plugins.md).\n\n"
        f"{intro}\n\n{body}"
    )


def cli_reference() -> str:
    """Every command of ``qtasks`` (the group's own options first, then each command and
    each command of a sub-group such as ``qtasks server``), in the order of its help."""
    import typer

    from qtasks_core.cli import cli

    root = typer.main.get_command(cli)
    context = typer.Context(root, info_name="qtasks")
    sections = [_cli_command(root, context, "qtasks")]
    for name, command, parent in _cli_commands(root, context):
        sub = typer.Context(command, info_name=name, parent=parent)
        sections.append(_cli_command(command, sub, sub.command_path))
    return "\n\n".join(sections)


def _cli_commands(group: Any, context: Any) -> list[tuple[str, Any, Any]]:
    """``(name, command, parent context)`` of each visible command, sub-groups' too."""
    import typer
    from typer.core import TyperGroup

    found = []
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command is None or command.hidden:
            continue
        if isinstance(command, TyperGroup):
            inner = typer.Context(command, info_name=name, parent=context)
            found += _cli_commands(command, inner)
        else:
            found.append((name, command, context))
    return found


def _cli_command(command: Any, context: Any, path: str) -> str:
    anchor = "-".join(path.split()[1:]) or "qtasks"
    text = [
        f"### `{path}` {{#{anchor}}}",
        f"```text\n{command.get_usage(context)}\n```",
        command.help or "",
    ]
    rows = [param.get_help_record(context) for param in command.params]
    rows = [row for row in rows if row is not None]
    if rows:
        table = ["| option | what it does |", "|---|---|"]
        table += [f"| `{flags}` | {_cell(help_text)} |" for flags, help_text in rows]
        text.append("\n".join(table))
    return "\n\n".join(part for part in text if part)


def _cell(text: str) -> str:
    """Help text in one table cell: one line, its pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _link_generated_reference(markdown: str) -> str:
    head, begin, rest = markdown.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise PluginError(f"docs/plugins.md lost its markers {BEGIN} … {END}")
    link = (
        "Every trigger, with each argument and what its return replaces, is in the "
        f"[trigger reference]({TRIGGERS_PAGE}), generated from "
        "the hookspecs when this site is built.\n"
    )
    return head + link + tail


def _readme_sections() -> dict[str, str]:
    """The README's ``##`` sections by title; ``(intro)`` is the text above the first."""
    sections: dict[str, str] = {}
    title = "(intro)"
    lines: list[str] = []
    fence = False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and line.startswith("## "):
            sections[title] = "\n".join(lines).strip("\n")
            title, lines = line[3:].strip(), []
        elif not fence and line.startswith("# "):
            continue  # the README's title: each page has its own
        else:
            lines.append(line)
    sections[title] = "\n".join(lines).strip("\n")
    return sections


def _blocks(text: str) -> list[str]:
    """The section's blocks: paragraphs, lists, tables, fenced code (kept whole)."""
    blocks: list[str] = []
    current: list[str] = []
    fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _include(match: re.Match[str], src: str) -> str:
    section, start, stop = match["section"].strip(), match["start"], match["stop"]
    sections = _readme_sections()
    if section not in sections:
        raise PluginError(
            f"docs/{src} includes the README section {section!r}, which the README no "
            f"longer has; its sections are {', '.join(repr(s) for s in sections)}"
        )
    text = sections[section]
    if start is not None:
        blocks = _blocks(text)
        first = next((i for i, b in enumerate(blocks) if b.startswith(start)), None)
        if first is None:
            raise PluginError(
                f"docs/{src} includes the block of README section {section!r} that starts "
                f"with {start!r}: no block starts so any more"
            )
        last = first + 1
        if stop is not None:
            last = next((i for i, b in enumerate(blocks) if b.startswith(stop)), -1)
            if last <= first:
                raise PluginError(
                    f"docs/{src}: no block of README section {section!r} after {start!r} "
                    f"starts with {stop!r}"
                )
        text = "\n\n".join(blocks[first:last])
    # The README links to docs/ files from the repository root; on the site they are
    # pages relative to this one.
    here = posixpath.dirname(src)
    text = _README_LINK.sub(lambda m: f"]({posixpath.relpath(m['target'], here or '.')})", text)
    # GitHub needs `\|` for a pipe in a table's code span; Python-Markdown keeps code
    # spans whole and would show the backslash.
    return re.sub(
        r"^\|.*$",
        lambda row: re.sub(r"`[^`]*`", lambda c: c[0].replace("\\|", "|"), row[0]),
        text,
        flags=re.MULTILINE,
    )
