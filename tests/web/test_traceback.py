"""Reading a stored traceback back into its parts (``qtasks_core.web._traceback``),
with tracebacks Python itself printed, of code placed where a worker's would be."""

from __future__ import annotations

import linecache
import sys
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from qtasks_core.web._traceback import is_own, parse, summary

#: Where QTasks runs a task from, on a worker's machine (not this one's paths).
WORKER = "/srv/venv/lib/python3.12/site-packages/qtasks_core/executor.py"
USER = "/srv/app/reports/tasks.py"


def _function(path: str, source: str, name: str, **scope: Any) -> Callable[..., Any]:
    """A function whose frames name ``path``, as code loaded from there would (its
    source lines printed under them)."""
    linecache.cache[path] = (len(source), None, source.splitlines(True), path)
    exec(compile(source, path, "exec"), scope)
    return scope[name]  # type: ignore[no-any-return]


def _printed(call: Callable[[], object]) -> str:
    try:
        call()
    except Exception as exc:
        return "".join(traceback.format_exception(exc))
    raise AssertionError("it did not raise")


def _through_qtasks(user_source: str, name: str) -> str:
    """The traceback of the user's function ``name`` run the way a worker runs it."""
    task = _function(USER, user_source, name)
    run = _function(WORKER, "def execute(task):\n    return task()\n", "execute")
    return _printed(lambda: run(task))


def test_a_failure_reads_as_the_users_frames_and_qtasks_own() -> None:
    text = _through_qtasks(
        "def total(rows):\n    return sum(rows) / len(rows)\n\n"
        "def report():\n    return total([])\n",
        "report",
    )
    [only] = parse(text) or []
    assert [(f.function, f.own) for f in only.frames] == [
        ("_printed", False),  # this test's own calls
        ("<lambda>", False),
        ("execute", True),
        ("report", False),
        ("total", False),
    ]
    assert only.frames[-1].file == USER and only.frames[-1].line == 2
    assert any("sum(rows) / len(rows)" in line for line in only.frames[-1].lines)
    assert only.exception == "ZeroDivisionError: division by zero"
    assert only.own_count == 1
    assert [(own, len(frames)) for own, frames in only.runs] == [(False, 2), (True, 1), (False, 2)]
    assert summary(text, parse(text)).type == "ZeroDivisionError"
    assert summary(text, parse(text)).message == "division by zero"


def test_a_chain_keeps_each_exception_and_the_sentence_between() -> None:
    caused = _through_qtasks(
        "def load(key):\n    try:\n        return {}[key]\n"
        "    except KeyError as exc:\n        raise LookupError(f'no row {key}') from exc\n"
        "def job():\n    return load('k')\n",
        "job",
    )
    first, last = parse(caused) or []
    assert first.exception == "KeyError: 'k'"
    assert first.link == "The above exception was the direct cause of the following exception:"
    assert last.exception == "LookupError: no row k" and last.link == ""
    assert summary(caused, parse(caused)) == summary(caused)  # the last one, either way
    assert summary(caused).type == "LookupError"

    during = _through_qtasks(
        "def job():\n    try:\n        1 / 0\n"
        "    except ZeroDivisionError:\n        undefined_name\n",
        "job",
    )
    first, last = parse(during) or []
    assert first.link.startswith("During handling of the above exception")
    assert last.exception.startswith("NameError: name 'undefined_name' is not defined")


def test_a_message_over_several_lines_is_summed_up_whole() -> None:
    text = _through_qtasks("def job():\n    raise RuntimeError('first\\nsecond')\n", "job")
    [only] = parse(text) or []
    assert only.exception == "RuntimeError: first\nsecond"
    assert summary(text, parse(text)).message == "first\nsecond"


def test_a_recursion_keeps_its_repeat_count_under_its_frame() -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 200))
    text = _through_qtasks("def down(n=0):\n    return down(n + 1)\n", "down")
    [only] = parse(text) or []
    assert only.exception.startswith("RecursionError")
    assert any(line.startswith("[Previous line repeated") for f in only.frames for line in f.lines)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "killed by signal 9",
        "Traceback (most recent call last):\n",  # cut short
        'Traceback (most recent call last):\n  File "a.py", line 1, in f\n',  # no exception
        "ValueError: raised nowhere\n",  # format_exception of an exception never raised
        'Traceback (most recent call last):\n  File "a.py", line 1, in f\nValueError: x\n\n'
        "The above exception was the direct cause of the following exception:\n\n",
        "  + Exception Group Traceback (most recent call last):\n"
        '  |   File "a.py", line 1, in f\n  | ExceptionGroup: two (2 sub-exceptions)\n',
        "Traceback (most recent call last):\n   garbled\nValueError: x\n",
    ],
)
def test_text_of_another_shape_is_left_whole(text: str) -> None:
    assert parse(text) is None


def test_the_summary_of_unparsed_text_is_its_last_unindented_line() -> None:
    assert summary("ValueError: raised nowhere\n") == summary("x\nValueError: raised nowhere")
    assert summary("ValueError: raised nowhere").type == "ValueError"
    assert summary("killed by signal 9").message == "killed by signal 9"
    assert summary("").type == "" and summary("").message == ""


def test_text_added_after_an_exception_stays_with_it() -> None:
    # Storage.fail appends a plugin's own failure to the task's traceback so.
    task = _printed(lambda: 1 / 0)
    plugin = _printed(lambda: {}["x"])
    text = task + "\nwhile storing this error:\n" + plugin
    first, last = parse(text) or []
    assert first.exception.startswith("ZeroDivisionError")
    assert "while storing this error:" in first.exception
    assert last.exception == "KeyError: 'x'"


@pytest.mark.parametrize(
    ("file", "own"),
    [
        ("/usr/lib/python3.12/site-packages/qtasks_core/worker.py", True),
        ("C:\\venv\\Lib\\site-packages\\qtasks_hooks\\_caller.py", True),
        ("/usr/lib/python3.12/asyncio/events.py", True),
        ("/usr/lib/python3.12/concurrent/futures/thread.py", True),
        ("/venv/site-packages/pluggy/_callers.py", True),
        ("/venv/site-packages/anyio/to_thread.py", True),
        ("/usr/lib/python3.12/threading.py", True),
        ("/srv/app/tasks.py", False),
        ("/srv/app/asyncio_helpers.py", False),
        ("<string>", False),
    ],
)
def test_qtasks_own_frames_are_told_by_their_package(file: str, own: bool) -> None:
    assert is_own(file) is own
