"""The tasks list's search: text in the arguments, result and traceback of the
filter's newest records, and a page that says how far it looked."""

from __future__ import annotations

import re
import time

import pytest

from qtasks_core import QueueTasks, storage
from qtasks_core.starter import Starter
from qtasks_core.web import _app


def declare(app: QueueTasks) -> None:
    @app.task
    def greet(name: str) -> str:
        return f"Hello {name}"

    @app.task
    def charge(account: str) -> None:
        raise ValueError(f"card declined for {account}")


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-task="([^"]+)"', html)


def test_the_search_box_finds_text_in_arguments_results_and_errors(app, dashboard) -> None:
    declare(app)
    ann = app.add_task("greet", "Ann").uuid
    declined = app.add_task("charge", "acct-77").uuid
    Starter(app, app.worker(), burst=True).start()
    browser = dashboard(app)
    page = browser.get("/tasks?search=ANN").text
    assert rows(page) == [ann]
    assert 'name="search" value="ANN"' in page
    assert re.search(r'data-searched="2">\s*1 match for “ANN” in 2 records searched\.', page)
    assert "data-search-cut" not in page
    assert rows(browser.get("/tasks?search=card+declined").text) == [declined]
    assert rows(browser.get("/tasks?search=hello+ann&status=error").text) == []
    # The live fragment polls the same search.
    assert 'hx-get="/tasks?search=ANN"' in page


def test_a_search_cut_short_by_its_window_says_so_and_how_to_go_on(
    app, dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare(app)
    monkeypatch.setattr(storage, "SEARCH_WINDOW", 5)
    monkeypatch.setattr(_app, "SEARCH_WINDOW", 5)
    needle = app.add_task("greet", "needle").uuid
    Starter(app, app.worker(), burst=True).start()
    # Later than the needle by more than the clock's step (ms): newer, whatever the
    # order of tasks that end in the same millisecond.
    time.sleep(0.01)
    for i in range(7):
        app.add_task("greet", f"hay {i}")
    Starter(app, app.worker(), burst=True).start()
    browser = dashboard(app)
    page = browser.get("/tasks?search=needle&status=success").text
    assert rows(page) == []
    assert "data-search-cut" in page
    assert "The search stops after the newest 5 records of this filter" in page
    assert "Narrow it (a status, a task name, a queue)" in page
    further = re.search(r'<a href="([^"]+)">search the next 5</a>', page)
    assert further is not None
    older = browser.get(further.group(1).replace("&amp;", "&")).text
    assert rows(older) == [needle]
    assert "older than the previous page" in older
