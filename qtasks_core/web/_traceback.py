"""A stored traceback, read back into its parts for the failed task's page.

A worker stores the text ``traceback.format_exception`` made; this module reads it
back: each exception of the chain (the oldest first, as Python prints them), its
frames, and the sentence that links it to the next. Each frame is marked as the
user's or as QTasks' own (QTasks and the machinery it runs tasks on: asyncio, thread
pools, pluggy, anyio), so that the page can fold the frames a user did not write.

Text of any other shape (an exception group, a reason written by a plugin, a
traceback cut short) is no error: :func:`parse` returns ``None`` and the page shows
the text whole, as it was stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Final

__all__ = ["OWN_PACKAGES", "Chained", "Frame", "Summary", "is_own", "parse", "summary"]

#: Directories whose frames are QTasks' own, wherever they are installed: a traceback
#: is written on a worker's machine, whose paths the dashboard's cannot know.
OWN_PACKAGES: Final = frozenset(
    {"qtasks_core", "qtasks_hooks", "asyncio", "concurrent", "pluggy", "anyio"}
)
#: Standard-library modules a task's call passes through on its way in.
_OWN_MODULES: Final = frozenset({"threading.py", "runpy.py", "contextvars.py"})

_HEADER: Final = "Traceback (most recent call last):"
#: The sentences Python puts between two exceptions of a chain.
_LINKS: Final = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
_FRAME: Final = re.compile(r'^  File "(?P<file>[^"]*)", line (?P<line>\d+)(?:, in (?P<func>.*))?$')
#: ``Type: message``, the type a dotted name (``pkg.errors.Oops``).
_EXCEPTION: Final = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$", re.S)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: where it is, and the lines printed under it (its source line, the
    carets that point into it, ``[Previous line repeated …]``)."""

    file: str
    line: int
    function: str
    lines: tuple[str, ...]
    #: A frame of QTasks or of the machinery it runs tasks on (:func:`is_own`).
    own: bool


@dataclass(frozen=True, slots=True)
class Chained:
    """One exception of a chain: its frames, outermost first, and its ``Type:
    message`` text (a message may run over several lines)."""

    frames: tuple[Frame, ...]
    exception: str
    #: The sentence that leads from this exception to the next one (``""``: the last).
    link: str = ""

    @property
    def runs(self) -> list[tuple[bool, tuple[Frame, ...]]]:
        """The frames in runs of the user's or of QTasks' own: ``(own, frames)``, in
        order, so that a page folds each run of QTasks frames where it stands."""
        out: list[tuple[bool, tuple[Frame, ...]]] = []
        for frame in self.frames:
            if out and out[-1][0] == frame.own:
                out[-1] = (frame.own, (*out[-1][1], frame))
            else:
                out.append((frame.own, (frame,)))
        return out

    @property
    def innermost_user(self) -> Frame | None:
        """The user's frame nearest the raise: where to look first."""
        return next((frame for frame in reversed(self.frames) if not frame.own), None)

    @property
    def own_count(self) -> int:
        """How many of its frames are QTasks' own."""
        return sum(frame.own for frame in self.frames)


@dataclass(frozen=True, slots=True)
class Summary:
    """What ended the task, for a heading: the exception's type and its message."""

    type: str
    message: str


def is_own(file: str) -> bool:
    """Whether a frame of ``file`` (as the traceback spells it) is QTasks' own: under
    a directory named in :data:`OWN_PACKAGES`, or a module of :data:`_OWN_MODULES`."""
    path = PurePath(file.replace("\\", "/"))
    return bool(OWN_PACKAGES.intersection(path.parts[:-1])) or path.name in _OWN_MODULES


def parse(text: str) -> list[Chained] | None:
    """The exceptions of the traceback ``text``, the oldest first as Python prints
    them (the last one ended the task); ``None`` for text of another shape."""
    lines = text.rstrip("\n").splitlines()
    chain: list[Chained] = []
    i = 0
    while i < len(lines):
        if lines[i] != _HEADER:
            return None
        i += 1
        frames: list[Frame] = []
        while i < len(lines) and lines[i].startswith("  "):
            found = _FRAME.match(lines[i])
            if found is None:
                # Printed under a frame: its source, carets, or a repeat count.
                if not frames:
                    return None
                last = frames[-1]
                # Source and carets are indented by four, a repeat count by two.
                shown = lines[i][4:] if lines[i].startswith("    ") else lines[i].strip()
                frames[-1] = Frame(
                    last.file, last.line, last.function, (*last.lines, shown), last.own
                )
            else:
                file = found["file"]
                frames.append(
                    Frame(file, int(found["line"]), found["func"] or "?", (), is_own(file))
                )
            i += 1
        # The exception's text runs to the sentence that links it to the next, or to
        # the next header (text added in between, e.g. "while storing this error:",
        # stays with it).
        start = i
        link = ""
        while i < len(lines) and lines[i] != _HEADER:
            if lines[i] in _LINKS:
                link = lines[i]
                break
            i += 1
        exception = "\n".join(lines[start:i]).strip("\n")
        if link:
            i += 1
            while i < len(lines) and not lines[i]:
                i += 1
            if i >= len(lines):
                return None  # a link to nothing: cut short
        if not frames or not exception or _EXCEPTION.match(exception) is None:
            return None
        chain.append(Chained(tuple(frames), exception, link))
    return chain or None


def summary(text: str, chain: list[Chained] | None = None) -> Summary:
    """The type and message of the exception that ended the task: the last of the
    chain (``chain``, as :func:`parse` read ``text``), else the text's last unindented
    line (a traceback of another shape)."""
    if chain:
        line = chain[-1].exception
    else:
        line = next((ln for ln in reversed(text.splitlines()) if ln and not ln[0].isspace()), "")
    found = _EXCEPTION.match(line)
    if found is None:
        return Summary("", line.strip())
    return Summary(found["type"], (found["message"] or "").strip())
