"""Bulk actions on a filter: a page that counts what they would touch, touching
nothing, then a guarded POST whose notice says how many were done and skipped."""

from __future__ import annotations

import re

import pytest

from qtasks_core import QueueTasks
from qtasks_core.starter import Starter
from qtasks_core.web import _app

from .conftest import make_dead_letters


def declare(app: QueueTasks) -> None:
    @app.task
    def boom(n: int) -> None:
        raise ValueError(f"boom {n}")

    @app.task
    def other() -> None:
        raise ValueError("other")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b


def failed(app: QueueTasks, name: str, n: int) -> list[str]:
    tasks = [app.add_task(name, i) if name == "boom" else app.add_task(name) for i in range(n)]
    Starter(app, app.worker(), burst=True).start()
    return [t.uuid for t in tasks]


def notice(browser, answer) -> str:  # type: ignore[no-untyped-def]
    found = re.search(
        r'<p class="notice (\w+)" role="status">([^<]+)</p>',
        browser.get(answer.headers["location"]).text,
    )
    assert found is not None, "no notice"
    return found.group(2)


def test_retry_all_failed_counts_first_then_sends_each_again(app, dashboard) -> None:
    declare(app)
    booms = failed(app, "boom", 3)
    failed(app, "other", 1)
    browser = dashboard(app)
    listed = browser.get("/tasks?status=error&task_name=boom").text
    link = re.search(r'data-bulk-link="retry-failed" href="([^"]+)"', listed)
    assert link is not None
    page = browser.get(link.group(1).replace("&amp;", "&")).text
    assert 'data-bulk-count="3"' in page and "Retry 3 failed tasks" in page
    assert "<dd data-bulk-name>boom</dd>" in page
    # Counting touched nothing.
    assert app.list_tasks(status="new").tasks == []
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    assert form["action"] == "retry-failed" and form["task_name"] == "boom"
    answer = browser.post("/bulk/act", form)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/tasks?done=bulk-retry")
    assert notice(browser, answer) == (
        "Retry all failed of task boom: 3 sent again as new tasks, 0 skipped."
    )
    again = app.list_tasks(status="new").tasks
    assert sorted(t.args for t in again) == [(0,), (1,), (2,)]
    assert all(t.task_name == "boom" for t in again)
    assert {t.uuid for t in again}.isdisjoint(booms)
    # Asked again (a second click, or another operator): each was sent once already.
    page = browser.get(link.group(1).replace("&amp;", "&")).text
    assert "of which 3 will be skipped (sent again already: 3)" in page
    answer = browser.post("/bulk/act", form)
    assert notice(browser, answer) == (
        "Retry all failed of task boom: 0 sent again as new tasks, 3 skipped "
        "(3 sent again already)."
    )
    assert len(app.list_tasks(status="new").tasks) == 3


def test_cancel_all_queued_of_a_name_says_how_many_were_skipped(app, dashboard) -> None:
    declare(app)
    queued = [app.add_task("add", i, i).uuid for i in range(4)]
    app.add_task("boom", 9)  # another name: left alone
    browser = dashboard(app)
    listed = browser.get("/tasks?status=new&task_name=add").text
    assert 'data-bulk-link="cancel-queued"' in listed
    page = browser.get("/bulk?action=cancel-queued&task_name=add").text
    assert 'data-bulk-count="4"' in page
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    # Meanwhile one of them was cancelled: it is no longer queued.
    assert app.cancel(queued[0])
    answer = browser.post("/bulk/act", form)
    assert notice(browser, answer) == "Cancel all queued of task add: 3 cancelled, 0 skipped."
    assert [t.task_name for t in app.list_tasks(status="new").tasks] == ["boom"]


def test_a_task_no_longer_in_that_status_is_skipped_saying_why(
    app, dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare(app)
    failed(app, "boom", 1)
    browser = dashboard(app)
    token = browser.csrf()

    async def retried_elsewhere(self, uuid, *, once=False):  # type: ignore[no-untyped-def]
        raise _app.TaskOptionError("it is no longer failed")

    monkeypatch.setattr(type(app), "retry_async", retried_elsewhere)
    answer = browser.post("/bulk/act", {"csrf": token, "action": "retry-failed"})
    assert notice(browser, answer) == (
        "Retry all failed: 0 sent again as new tasks, 1 skipped (1 no longer failed (or gone))."
    )


def test_delete_all_dead_letters_with_more_than_the_bound(
    app, dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare(app)
    monkeypatch.setattr(_app, "BULK_MAX", 5)
    make_dead_letters(app, "add", 7)
    browser = dashboard(app)
    assert 'data-bulk-link="delete-dead"' in browser.get("/dead").text
    page = browser.get("/bulk?action=delete-dead").text
    assert 'data-bulk-count="5"' in page and "data-bulk-more" in page
    assert "More than 5 match: one action touches at most 5 (the newest)" in page
    answer = browser.act("/bulk/act", action="delete-dead")
    assert answer.headers["location"].startswith("/dead?done=bulk-delete-dead")
    assert notice(browser, answer) == (
        "Delete all dead letters: 5 deleted, 0 skipped "
        "(more than 5 matched: run it again for the rest)."
    )
    assert len(app.dead_letters()) == 2
    browser.act("/bulk/act", action="delete-dead")
    assert app.dead_letters() == []


def test_delete_dead_letters_of_one_task_name(app, dashboard) -> None:
    declare(app)
    make_dead_letters(app, "add", 2)
    make_dead_letters(app, "boom", 3)
    browser = dashboard(app)
    assert 'data-bulk-count="3"' in browser.get("/bulk?action=delete-dead&task_name=boom").text
    browser.act("/bulk/act", action="delete-dead", task_name="boom")
    assert len(app.dead_letters()) == 2


def test_an_empty_filter_has_nothing_to_do_and_no_button(app, dashboard) -> None:
    declare(app)
    page = dashboard(app).get("/bulk?action=retry-failed").text
    assert 'data-bulk-count="0"' in page and 'data-action="bulk"' not in page


def test_bulk_actions_are_refused_when_read_only_or_unknown(app, dashboard) -> None:
    declare(app)
    failed(app, "boom", 1)
    read_only = dashboard(app, read_only=True)
    assert "data-bulk-link" not in read_only.get("/tasks?status=error").text
    assert read_only.get("/bulk?action=retry-failed").status_code == 403
    answer = read_only.act("/bulk/act", action="retry-failed")
    assert answer.status_code == 403 and "read-only" in answer.text
    assert app.list_tasks(status="new").tasks == []
    browser = dashboard(app)
    assert browser.get("/bulk?action=everything").status_code == 400
    nameless = browser.get("/bulk?action=cancel-queued")
    assert nameless.status_code == 400 and "needs a task name" in nameless.text
    assert browser.get("/bulk/act").status_code == 405  # a GET never acts
