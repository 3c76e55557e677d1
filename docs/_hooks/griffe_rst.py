"""A Griffe extension (``extensions:`` of mkdocstrings in ``mkdocs.yml``): the
docstrings' reStructuredText idioms, rewritten as Markdown for the API reference.

The docstrings are written for ``help()`` and the source (Sphinx fields, ``::``
blocks, simple tables, ``:class:`` roles); the site renders Markdown. Only the copy
that mkdocstrings renders changes.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

# :class:`~a.b.C` -> `C`; :meth:`run` -> `run`.
_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):`~?(?P<target>[^`]+)`")
# ":param a: / :param b: text" documents two parameters with one text.
_SHARED_PARAM = re.compile(r"^(?P<indent>\s*):param (?P<first>\w+): / :param (?P<second>\w+):")
_CODE = re.compile(r"^\s*(from |import |def |class |@|\w[\w.]*\s*(=|\())", re.MULTILINE)
_TABLE_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _roles(text: str) -> str:
    return _ROLE.sub(lambda m: f"`{m['target'].rsplit('.', 1)[-1]}`", text)


def _shared_params(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _SHARED_PARAM.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        rest = lines[i][match.end() :]
        block = [rest]
        i += 1
        while i < len(lines) and lines[i].startswith(match["indent"] + " ") and lines[i].strip():
            block.append(lines[i])
            i += 1
        for name in (match["first"], match["second"]):
            out.append(f"{match['indent']}:param {name}:{block[0]}")
            out.extend(block[1:])
    return out


def _literal_blocks(lines: list[str]) -> list[str]:
    """``text::`` + an indented block -> ``text:`` + a fenced block; a simple table
    (``===  ===`` rules) -> a Markdown table."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _TABLE_RULE.match(line):
            rules = [j for j in range(i, len(lines)) if _TABLE_RULE.match(lines[j])]
            end = rules[2] if len(rules) >= 3 else rules[-1]
            out += ["", *_table(lines[i : end + 1]), ""]
            i = end + 1
            continue
        if line.rstrip().endswith("::"):
            head = line.rstrip()[:-2].rstrip()
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            indent = len(line) - len(line.lstrip())
            k = j
            while k < len(lines) and (
                not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) > indent
            ):
                k += 1
            while k > j and not lines[k - 1].strip():
                k -= 1
            if k > j:
                if head:
                    out.append(head + ":")
                block = textwrap.dedent("\n".join(lines[j:k]))
                # Code is highlighted; a diagram (the errors' tree) is shown as it is.
                language = "python" if _CODE.search(block) else "text"
                out += ["", f"```{language}", *block.split("\n"), "```", ""]
                i = k
                continue
        out.append(line)
        i += 1
    return out


def _table(lines: list[str]) -> list[str]:
    """A simple table (rule, header, rule, rows, rule) as a Markdown table; a row whose
    first column is blank continues the row above."""
    spans = [m.span() for m in re.finditer(r"=+", lines[0])]

    def cells(line: str) -> list[str]:
        ends = [start for start, _ in spans[1:]] + [len(line)]
        return [line[start:end].strip() for (start, _), end in zip(spans, ends, strict=True)]

    rows: list[list[str]] = []
    for line in lines[1:]:
        if _TABLE_RULE.match(line) or not line.strip():
            continue
        row = cells(line)
        if rows and not row[0]:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], row, strict=True)]
        else:
            rows.append(row)
    header, *body = rows
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in body),
    ]


class RstToMarkdown(griffe.Extension):
    """Rewrite each loaded object's docstring (see the module docstring)."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        lines = _roles(obj.docstring.value).split("\n")
        obj.docstring.value = "\n".join(_literal_blocks(_shared_params(lines)))
