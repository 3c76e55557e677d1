"""Render the trigger reference (Markdown) from the hookspec docstrings.

``python -m qtasks_hooks.reference`` prints it; ``--write docs/plugins.md`` replaces
the generated part of that file. A test keeps the file in sync with the specs.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from ._manager import get_plugin_manager
from .specs import EXTENSION_MODULES, SPEC_MODULES

BEGIN = "<!-- BEGIN GENERATED TRIGGER REFERENCE -->"
END = "<!-- END GENERATED TRIGGER REFERENCE -->"


def render() -> str:
    """The reference: one section per component, one entry per trigger."""
    pm = get_plugin_manager()
    out = [BEGIN, ""]
    for module in (*SPEC_MODULES, *EXTENSION_MODULES):
        component = module.__name__.rsplit(".", 1)[1]
        extension = " (an extension beyond the reference)" if module in EXTENSION_MODULES else ""
        out.append(f"### `{component}`{extension}")
        out.append("")
        out.append(inspect.cleandoc(module.__doc__ or ""))
        out.append("")
        functions = [
            f
            for name, f in vars(module).items()
            if callable(f) and getattr(f, "qtasks_spec", None) is not None
        ]
        for function in sorted(functions, key=lambda f: f.__code__.co_firstlineno):
            signature = inspect.signature(function)
            rule = pm.rule(function.__name__)
            returns = "no return" if rule is None else f"returns: {rule.kind} {list(rule.names)}"
            params = ", ".join(signature.parameters)
            out.append(f"#### `{function.__name__}({params})`  ({returns})")
            out.append("")
            out.append(_markdown(inspect.cleandoc(function.__doc__ or "")))
            out.append("")
    out.append(END)
    return "\n".join(out) + "\n"


def _markdown(doc: str) -> str:
    """Docstring fields as a Markdown list: ``:param x: …`` -> ``- `x`: …``."""
    lines: list[str] = []
    for line in doc.splitlines():
        if line.startswith(":param "):
            name, _, text = line.removeprefix(":param ").partition(":")
            lines.append(f"- `{name}`:{text}")
        elif line.startswith(":return:"):
            lines.append(f"- **return**:{line.removeprefix(':return:')}")
        elif line.startswith("    ") and lines and lines[-1].startswith("- "):
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return "\n".join(lines)


def write(path: Path) -> None:
    """Replace the generated part of ``path`` (between the markers)."""
    text = path.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END + "\n")
    path.write_text(head + render() + tail)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="update this Markdown file in place")
    args = parser.parse_args(argv)
    if args.write:
        write(args.write)
    else:
        sys.stdout.write(render())


if __name__ == "__main__":
    main()
