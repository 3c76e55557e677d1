"""Every page and action of the dashboard at HTTP level, on the in-memory backend and
on a real Redis server (the ``app`` fixture runs each test on both)."""

from __future__ import annotations

import importlib.metadata
import re
from datetime import timedelta

from qtasks_core import QueueTasks
from tests.support import wait_for

from .conftest import make_dead_letter, make_dead_letters


def declare(app: QueueTasks) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def boom() -> None:
        raise ValueError("the dashboard shows this")

    @app.task(queue="emails")
    def send(to: str) -> str:
        return to


def count(html: str, status: str) -> int:
    found = re.search(rf'data-count="{status}">(\d+)<', html)
    assert found is not None, f"no {status} count on the page"
    return int(found.group(1))


# -- pages -----------------------------------------------------------------------------


def test_the_overview_shows_queues_per_priority_statuses_and_throughput(app, dashboard) -> None:
    declare(app)
    app.add_task("add", 1, 2, priority=3)
    app.add_task("add", 1, 2, priority=3)
    app.send_task("send", ["ann@example.com"], queue="emails")
    page = dashboard(app).get("/")
    assert page.status_code == 200
    html = page.text
    assert count(html, "new") == 3
    row = re.search(r'<tr data-queue="default">.*?</tr>', html, re.S)
    assert row is not None and "p3: 2" in row.group()
    assert 'data-queue="emails"' in html
    # No worker ran yet: the throughput panel says so (its chart: test_history.py).
    assert "No worker has reported yet" in html
    assert "<script" not in html.split("<main>")[1]  # no inline script: the CSP forbids it
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY"


def test_a_live_fragment_is_the_polled_element_alone(app, dashboard) -> None:
    declare(app)
    browser = dashboard(app)
    for path in ("/", "/workers", "/tasks?status=new", "/workflows", "/dead", "/schedules"):
        fragment = browser.get(path, headers={"HX-Request": "true"})
        assert fragment.status_code == 200, path
        assert fragment.text.startswith('<div id="live"'), path
        assert 'hx-trigger="every 2s"' in fragment.text and "<html" not in fragment.text
        assert fragment.headers["cache-control"] == "no-store"


def test_the_delayed_card_lists_the_tasks_waiting_for_their_due_time(app, dashboard) -> None:
    declare(app)
    waiting = app.send_task("add", [1, 2], delay=60).uuid
    browser = dashboard(app)
    overview = browser.get("/").text
    card = re.search(r'<a class="card s-retry" href="([^"]+)"', overview)
    assert card is not None and card.group(1) == "/tasks?status=delayed"
    assert 'data-count="retry">1<' in overview
    listed = browser.get(card.group(1)).text
    assert waiting in listed
    assert '<option value="delayed" selected>delayed</option>' in listed


def test_the_fragment_polls_the_same_filtered_view(app, dashboard) -> None:
    declare(app)
    page = dashboard(app).get("/tasks?status=error&task_name=boom")
    assert 'hx-get="/tasks?status=error&amp;task_name=boom"' in page.text


def test_the_workers_page_lists_a_live_worker_and_its_running_task(app, dashboard) -> None:
    import threading

    release = threading.Event()

    @app.task
    def hold() -> None:
        release.wait(20)

    browser = dashboard(app)
    with app.running_worker(concurrency=3, queues=["default", "emails"]) as worker:
        task = app.add_task("hold")

        # The page reads the worker's heartbeat record, renewed every lease/6.
        def busy() -> str | None:
            page = browser.get("/workers").text
            return page if "1 / 3" in page else None  # running / concurrency

        html = wait_for(busy, 20, "the heartbeat to show the running task")
        release.set()
    assert f'data-worker="{worker.id}"' in html
    assert f"/task?uuid={task.uuid}" in html
    assert '<span class="chip">emails</span>' in html
    beat = re.search(r"<td data-beat[^>]*>([^<]+)</td>", html)
    assert beat is not None and re.fullmatch(r"\d+ s ago", beat.group(1))
    version = importlib.metadata.version("qtasks-core")
    assert f"<td data-version>{version}</td>" in html


def test_the_workers_page_says_how_to_start_one_when_none_lives(app, dashboard) -> None:
    assert "No live worker" in dashboard(app).get("/workers").text


def test_the_tasks_page_filters_by_status_name_and_queue(app, dashboard) -> None:
    declare(app)
    with app.running_worker():
        ok = app.add_task("add", 2, 3, timeout=20)
        failed = app.add_task("boom", timeout=20)
        mail = app.send_task("send", ["bo@example.com"], queue="emails", timeout=20)
    browser = dashboard(app)
    errors = browser.get("/tasks?status=error").text
    assert failed.uuid in errors and ok.uuid not in errors
    named = browser.get("/tasks?status=success&task_name=add").text
    assert ok.uuid in named and mail.uuid not in named
    queued = browser.get("/tasks?status=success&queue=emails").text
    assert mail.uuid in queued and ok.uuid not in queued
    everything = browser.get("/tasks").text  # every finished task
    assert all(t.uuid in everything for t in (ok, failed, mail))


def test_the_tasks_page_is_paginated_newest_first(app, dashboard) -> None:
    declare(app)
    with app.running_worker(concurrency=8):
        done = [app.add_task("add", i, 0) for i in range(55)]
        for task in done:
            app.wait(task.uuid, timeout=30)
    browser = dashboard(app)
    first = browser.get("/tasks?status=success").text
    rows = re.findall(r'<tr data-task="([^"]+)"', first)
    assert len(rows) == 50
    older = re.search(r'href="([^"]+)" rel="next"', first)
    assert older is not None
    second = browser.get(older.group(1).replace("&amp;", "&")).text
    rest = re.findall(r'<tr data-task="([^"]+)"', second)
    assert sorted(rows + rest) == sorted(t.uuid for t in done)
    assert "« Newest" in second


def test_find_by_id_opens_the_task(app, dashboard) -> None:
    declare(app)
    task = app.add_task("add", 1, 1)
    found = dashboard(app).get(f"/tasks?uuid={task.uuid}", follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == f"/task?uuid={task.uuid}"


def test_a_bad_filter_is_refused_naming_it(app, dashboard) -> None:
    browser = dashboard(app)
    status = browser.get("/tasks?status=done")
    assert status.status_code == 400 and "status &#39;done&#39; is not one of" in status.text
    queue = browser.get("/tasks?queue=a b")
    assert queue.status_code == 400 and "queue name" in queue.text


def test_task_detail_shows_arguments_result_and_timeline(app, dashboard) -> None:
    declare(app)
    with app.running_worker():
        task = app.send_task("add", [2], {"b": 40}, timeout=20)
    html = dashboard(app).get(f"/task?uuid={task.uuid}").text
    assert "42" in re.search(r"data-result>(.*?)</pre>", html, re.S).group(1)  # type: ignore[union-attr]
    assert "&#34;b&#34;: 40" in html
    assert re.search(r'<ol class="timeline">.*s-created.*s-success', html, re.S)
    assert 'hx-trigger="every' not in html  # a finished task's page stops polling


def test_task_detail_shows_the_traceback_of_a_failure(app, dashboard) -> None:
    declare(app)
    with app.running_worker():
        task = app.add_task("boom", timeout=20)
    html = dashboard(app).get(f"/task?uuid={task.uuid}").text
    assert "ValueError: the dashboard shows this" in html
    assert "Attempts" in html


def test_task_detail_shows_the_progress_of_a_running_task(app, dashboard) -> None:
    import threading

    release = threading.Event()

    @app.task(echo=True)
    def crunch(self) -> None:  # type: ignore[no-untyped-def]
        self.ctx.set_progress(0.4, done=40, of=100)
        release.wait(20)

    browser = dashboard(app)
    with app.running_worker():
        task = app.add_task("crunch")

        def shown() -> str | None:
            page = browser.get(f"/task?uuid={task.uuid}").text
            return page if "data-progress" in page else None

        html = wait_for(shown, 20, "the progress to show")
        release.set()
        app.wait(task.uuid, timeout=20)
    assert '<progress value="0.4" max="1"></progress> 40 %' in html
    assert '<span class="chip">done: 40</span>' in html


def test_an_unknown_task_is_a_404_that_says_why(app, dashboard) -> None:
    page = dashboard(app).get("/task?uuid=nope")
    assert page.status_code == 404 and "no task has the id" in page.text


def test_the_dead_letters_page_shows_reason_and_raw_message(app, dashboard) -> None:
    declare(app)
    uuid = make_dead_letter(app, "add", 1, 2)
    html = dashboard(app).get("/dead").text
    assert f'data-dead="{uuid}"' in html
    assert "kept killing its workers" in html and "{&#34;raw&#34;: 1}" in html
    assert 'data-action="requeue"' in html and 'data-action="delete"' in html
    assert count(dashboard(app).get("/").text, "dead") == 1


def test_the_schedules_page_shows_last_and_next_runs(app, dashboard) -> None:
    declare(app)
    app.add_schedule("nightly", "add", cron="0 3 * * *", tz="Europe/Berlin", args=(1, 2))
    app.add_schedule("often", "add", every=timedelta(seconds=30))
    html = dashboard(app).get("/schedules").text
    assert 'data-schedule="nightly"' in html and "cron 0 3 * * * (Europe/Berlin)" in html
    assert "every 30 s" in html and "never" in html and "at run time" in html


# -- actions ---------------------------------------------------------------------------


def test_requeueing_a_dead_letter_runs_it(app, dashboard) -> None:
    declare(app)
    uuid = make_dead_letter(app, "add", 20, 22)
    browser = dashboard(app)
    answer = browser.act("/dead/requeue", uuid=uuid)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/dead?done=requeued")
    assert "is queued again" in browser.get(answer.headers["location"]).text
    with app.running_worker():
        assert app.wait(uuid, timeout=20).returning == 42
    assert f'data-dead="{uuid}"' not in browser.get("/dead").text


def test_requeueing_what_is_not_a_dead_letter_says_so(app, dashboard) -> None:
    declare(app)
    task = app.add_task("add", 1, 2)
    browser = dashboard(app)
    answer = browser.act("/dead/requeue", uuid=task.uuid)
    assert "not requeued: it is not a dead letter" in browser.get(answer.headers["location"]).text


def test_deleting_a_dead_letter_forgets_it(app, dashboard) -> None:
    declare(app)
    uuid = make_dead_letter(app, "add", 1, 2)
    browser = dashboard(app)
    answer = browser.act("/dead/delete", uuid=uuid)
    assert "deleted" in browser.get(answer.headers["location"]).text
    assert app.dead_letters() == []


def test_cancelling_a_queued_task(app, dashboard) -> None:
    declare(app)
    task = app.add_task("add", 1, 2)
    browser = dashboard(app)
    assert 'data-action="cancel"' in browser.get(f"/task?uuid={task.uuid}").text
    answer = browser.act("/task/cancel", uuid=task.uuid)
    assert "cancelled" in browser.get(answer.headers["location"]).text
    got = app.get(task.uuid)
    assert got is not None and got.status == "cancel"
    assert got.cancel_reason == "cancelled from the dashboard"
    again = browser.act("/task/cancel", uuid=task.uuid)
    assert "was not cancelled" in browser.get(again.headers["location"]).text


def test_retrying_a_failed_task_sends_it_again(app, dashboard) -> None:
    declare(app)
    with app.running_worker():
        failed = app.add_task("boom", timeout=20)
        browser = dashboard(app)
        assert 'data-action="retry"' in browser.get(f"/task?uuid={failed.uuid}").text
        answer = browser.act("/task/retry", uuid=failed.uuid)
        assert answer.status_code == 303
        page = browser.get(answer.headers["location"])
        again = re.search(r"<h1>Task <code>([^<]+)</code>", page.text)
        assert again is not None and again.group(1) != failed.uuid
        assert f"a retry of {failed.uuid}" in page.text
        assert app.wait(again.group(1), timeout=20).task_name == "boom"


def test_retrying_a_task_that_has_not_ended_is_refused_saying_why(app, dashboard) -> None:
    declare(app)
    queued = app.add_task("add", 1, 2)
    answer = dashboard(app).act("/task/retry", uuid=queued.uuid)
    assert answer.status_code == 409 and "would run twice" in answer.text


def test_aborting_a_running_task_stops_it_on_its_worker(app, dashboard) -> None:
    import asyncio

    @app.task
    async def long() -> None:
        await asyncio.sleep(60)

    browser = dashboard(app)
    with app.running_worker(lease=1.5):
        task = app.add_task("long")
        wait_for(lambda: app.get(task.uuid).status == "process", 20, "the task to start")  # type: ignore[union-attr]
        assert 'data-action="abort"' in browser.get(f"/task?uuid={task.uuid}").text
        answer = browser.act("/task/abort", uuid=task.uuid)
        assert "is being aborted" in browser.get(answer.headers["location"]).text
        done = app.wait(task.uuid, timeout=20)
    assert done.status == "cancel" and done.cancel_reason == "aborted from the dashboard"
    again = browser.act("/task/abort", uuid=task.uuid)
    assert "had ended already" in browser.get(again.headers["location"]).text


def test_purging_a_queue(app, dashboard) -> None:
    declare(app)
    for _ in range(3):
        app.send_task("send", ["x"], queue="emails")
    app.add_task("add", 1, 2)
    browser = dashboard(app)
    answer = browser.act("/queues/purge", queue="emails")
    notice = browser.get(answer.headers["location"]).text
    assert "Queue emails: 3 queued task(s) cancelled" in notice
    html = browser.get("/").text
    assert count(html, "new") == 1


def test_an_action_without_its_field_or_with_a_bad_queue_is_refused(app, dashboard) -> None:
    browser = dashboard(app)
    assert browser.act("/dead/requeue").status_code == 400
    bad = browser.act("/queues/purge", queue="no:colons")
    assert bad.status_code == 400 and "queue name" in bad.text


def test_actions_are_post_only(app, dashboard) -> None:
    assert dashboard(app).get("/queues/purge?queue=default").status_code == 405


# -- big lists -------------------------------------------------------------------------


def test_two_thousand_dead_letters_are_shown_fifty_a_page_newest_first(app, dashboard) -> None:
    declare(app)
    buried = make_dead_letters(app, "add", 2000)
    browser = dashboard(app)
    html = browser.get("/dead").text
    shown = re.findall(r'data-dead="([^"]+)"', html)
    assert len(shown) == 50
    assert "2000 dead letters in all, 50 on this page, newest first" in html
    assert buried[0] not in shown  # the oldest is on the last page
    seen = set(shown)
    pages = 1
    while (older := re.search(r'href="(/dead\?before=[^"]+)" rel="next"', html)) is not None:
        html = browser.get(older.group(1).replace("&amp;", "&")).text
        shown = re.findall(r'data-dead="([^"]+)"', html)
        assert shown and not seen & set(shown), "a page repeats a letter of an earlier one"
        seen |= set(shown)
        pages += 1
        if pages == 3:
            break
    assert pages == 3 and len(seen) == 150
    # A whole walk through the pages, as `qtasks dead` does, meets every letter once.
    walked: list[dict[str, str]] = []
    before = None
    while True:
        page = app.dead_letter_page(before=before, limit=300)
        assert page.total == 2000
        walked += page.letters
        if page.next is None:
            break
        before = page.next
    assert sorted(d["uuid"] for d in walked) == sorted(buried)
    times = [float(d["at"]) for d in walked]
    assert times == sorted(times, reverse=True)  # newest first


def test_the_next_page_holds_after_its_cursors_letter_is_requeued(app, dashboard) -> None:
    declare(app)
    make_dead_letters(app, "add", 120)
    newest_first = [d["uuid"] for d in app.dead_letter_page(limit=120).letters]
    browser = dashboard(app)
    first = browser.get("/dead").text
    assert re.findall(r'data-dead="([^"]+)"', first) == newest_first[:50]
    older = re.search(r'href="(/dead\?before=[^"]+)" rel="next"', first)
    assert older is not None
    # The page's last letter, which the Older link starts after, is requeued meanwhile.
    assert browser.act("/dead/requeue", uuid=newest_first[49]).status_code == 303
    second = browser.get(older.group(1)).text
    assert re.findall(r'data-dead="([^"]+)"', second) == newest_first[50:100]
    assert "119 dead letters in all" in second


def test_a_poll_gets_an_empty_answer_while_nothing_changed(app, dashboard) -> None:
    declare(app)
    make_dead_letter(app, "add", 1, 2)
    browser = dashboard(app)
    poll = {"HX-Request": "true"}
    first = browser.get("/dead", headers=poll)
    seen = re.search(r'"X-QTasks-Seen": "(\w+)"', first.text)
    assert first.status_code == 200 and seen is not None
    again = browser.get("/dead", headers={**poll, "X-QTasks-Seen": seen.group(1)})
    assert again.status_code == 204 and again.content == b""
    uuid = make_dead_letter(app, "add", 3, 4)  # something changed: the fragment comes
    changed = browser.get("/dead", headers={**poll, "X-QTasks-Seen": seen.group(1)})
    assert changed.status_code == 200 and f'data-dead="{uuid}"' in changed.text


def test_a_bad_page_cursor_is_a_400_that_says_why(app, dashboard) -> None:
    page = dashboard(app).get("/dead?before=nonsense")
    assert page.status_code == 400 and "before must be a cursor" in page.text
