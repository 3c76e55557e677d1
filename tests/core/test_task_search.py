"""``app.list_tasks(search=...)``: the tasks of a filter whose arguments, result or
traceback hold a text, looked for over a bounded window, on Redis and memory."""

from __future__ import annotations

import time

import pytest

from qtasks_core import QueueTasks, storage
from qtasks_core.errors import TaskOptionError
from qtasks_core.starter import Starter


def _register(app: QueueTasks) -> None:
    @app.task(name="greet")
    def greet(name: str, *, punctuation: str = "!") -> str:
        return f"Hello {name}{punctuation}"

    @app.task(name="charge")
    def charge(account: str, cents: int) -> None:
        raise ValueError(f"card declined for {account}")


def _run_all(app: QueueTasks) -> None:
    Starter(app, app.worker(), burst=True).start()


def _found(app: QueueTasks, text: str, **filters: str) -> set[str]:
    return {t.uuid for t in app.list_tasks(search=text, **filters).tasks}  # type: ignore[arg-type]


def test_a_search_finds_text_in_arguments_results_and_tracebacks(app: QueueTasks) -> None:
    _register(app)
    ann = app.add_task("greet", "Ann").uuid
    bo = app.add_task("greet", "Bo", punctuation="?!").uuid
    declined = app.add_task("charge", "acct-77", 500).uuid
    _run_all(app)
    assert _found(app, "ann") == {ann}  # case-insensitive, in an argument
    assert _found(app, "?!") == {bo}  # in a keyword argument
    assert _found(app, "hello bo") == {bo}  # in the result
    assert _found(app, "card declined") == {declined}  # in the traceback
    assert _found(app, "acct-77") == {declined}  # in its arguments as well
    assert _found(app, "hello", task_name="charge") == set()  # within the filter only
    assert _found(app, "ann", status="error") == set()
    assert _found(app, "nobody") == set()
    page = app.list_tasks(search="ann")
    assert page.searched == 3 and not page.search_cut and page.next is None
    # Without a search the page says nothing of one.
    assert app.list_tasks().searched is None


def test_a_search_folds_case_beyond_ascii(app: QueueTasks) -> None:
    # Text past ASCII is matched as Python folds its case (str.casefold).
    _register(app)
    street = app.add_task("greet", "Straße").uuid
    kelvin = app.add_task("greet", "\u212a-band").uuid  # KELVIN SIGN folds to "k"
    app.add_task("greet", "Strand")
    _run_all(app)
    assert _found(app, "STRASSE") == {street}
    assert _found(app, "k-band") == {kelvin}
    assert _found(app, "straße") == {street}
    assert _found(app, "hello str") == {street, _found(app, "strand").pop()}


def test_a_search_of_queued_tasks_reads_the_queue(app: QueueTasks) -> None:
    _register(app)
    queued = app.add_task("greet", "Queued Quinn").uuid
    app.add_task("greet", "Other")
    assert _found(app, "quinn", status="new") == {queued}


def test_a_search_stops_at_its_window_and_goes_on_from_there(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(app)
    monkeypatch.setattr(storage, "SEARCH_WINDOW", 10)
    needle = app.add_task("greet", "needle").uuid
    # The index orders by the millisecond a task finished, ties by uuid: the needle
    # runs alone and the rest a few milliseconds later, so that it is the oldest.
    _run_all(app)
    time.sleep(0.005)
    for i in range(14):
        app.add_task("greet", f"hay {i}")
    _run_all(app)
    first = app.list_tasks(search="needle")
    assert first.tasks == [] and first.searched == 10 and first.search_cut
    assert first.next is not None
    older = app.list_tasks(search="needle", before=first.next)
    assert [t.uuid for t in older.tasks] == [needle]
    assert older.searched == 5 and not older.search_cut and older.next is None


def test_a_search_over_every_finished_status_reads_each_record_once(app: QueueTasks) -> None:
    _register(app)
    for i in range(6):
        app.add_task("greet", f"ok {i}")
        app.add_task("charge", f"acct-{i}", i)
    cancelled = app.send_task("greet", ["later"], delay=60).uuid
    assert app.cancel(cancelled)
    _run_all(app)
    # Three indexes (success, error, cancel), merged newest first, none read twice.
    page = app.list_tasks(search="e", limit=100)
    assert page.searched == 13
    listed = [t.uuid for t in app.list_tasks(limit=100).tasks]
    assert [t.uuid for t in page.tasks] == [u for u in listed if u in {t.uuid for t in page.tasks}]
    assert _found(app, "later") == {cancelled}
    # A page full of matches stops there, with a cursor to the rest.
    first = app.list_tasks(search="acct-", limit=4)
    rest = app.list_tasks(search="acct-", limit=4, before=first.next)
    assert len(first.tasks) == 4 and len(rest.tasks) == 2 and not first.search_cut


@pytest.mark.parametrize("text", ["", "   "])
def test_a_search_without_text_is_refused(app: QueueTasks, text: str) -> None:
    with pytest.raises(TaskOptionError, match="search needs some text"):
        app.list_tasks(search=text)
