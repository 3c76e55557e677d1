"""``app.list_tasks``: pages of tasks from the backend's indexes, on Redis and memory."""

from __future__ import annotations

import pytest
import redis

from qtasks_core import QueueTasks
from qtasks_core.errors import TaskOptionError
from qtasks_core.keys import Keys
from qtasks_core.starter import Starter
from tests.support import wait_for


def _register(app: QueueTasks) -> None:
    @app.task(name="ok")
    def ok(n: int) -> int:
        return n

    @app.task(name="boom")
    def boom(n: int) -> int:
        raise ValueError(n)


def _run_all(app: QueueTasks) -> None:
    Starter(app, app.worker(), burst=True).start()


def _all_pages(app: QueueTasks, limit: int, **filters: str) -> list[str]:
    seen: list[str] = []
    before = None
    for _ in range(100):
        page = app.list_tasks(limit=limit, before=before, **filters)  # type: ignore[arg-type]
        seen += [t.uuid for t in page.tasks]
        if page.next is None:
            return seen
        before = page.next
    raise AssertionError("the pages never ended")


def test_finished_tasks_are_listed_newest_first_page_by_page(app: QueueTasks) -> None:
    _register(app)
    oks = [app.add_task("ok", i).uuid for i in range(7)]
    booms = [app.add_task("boom", i).uuid for i in range(3)]
    cancelled = app.send_task("ok", [99], delay=60).uuid
    assert app.cancel(cancelled)
    _run_all(app)

    success = _all_pages(app, 3, status="success")
    assert sorted(success) == sorted(oks)  # every one, none twice, across 3 pages
    ended = {t.uuid: t.updated_at for t in map(app.get, success) if t}
    assert [ended[u] for u in success] == sorted(ended.values(), reverse=True)
    assert sorted(_all_pages(app, 4, status="error")) == sorted(booms)
    assert _all_pages(app, 4, status="cancel") == [cancelled]
    assert sorted(_all_pages(app, 4)) == sorted([*oks, *booms, cancelled])
    assert sorted(_all_pages(app, 2, task_name="boom")) == sorted(booms)
    # A name within a status is filtered from the name's index.
    assert sorted(_all_pages(app, 2, task_name="ok", status="success")) == sorted(oks)
    assert _all_pages(app, 2, task_name="ok", status="cancel") == [cancelled]
    page = app.list_tasks(status="error", limit=1)
    assert page.tasks[0].status == "error" and page.tasks[0].traceback
    assert page.next is not None


def test_live_tasks_are_listed_in_queue_order(app: QueueTasks) -> None:
    _register(app)
    queued = [app.add_task("ok", i).uuid for i in range(5)]
    other = app.send_task("ok", [0], queue="other").uuid
    delayed = app.send_task("ok", [0], delay=60).uuid
    assert _all_pages(app, 2, status="new") == queued
    assert _all_pages(app, 2, status="new", queue="other") == [other]
    assert app.list_tasks(status="new", queue="default").tasks[0].uuid == queued[0]
    assert _all_pages(app, 2, status="process") == []
    # A task sent with a delay waits beside the retries, and its status is new.
    assert delayed not in _all_pages(app, 2, status="new")
    assert _all_pages(app, 2, status="retry") == []


def test_delayed_lists_every_task_waiting_for_its_due_time(app: QueueTasks) -> None:
    """A task sent with a delay and one waiting for a retry both wait for a due time:
    ``delayed`` lists them together, soonest first; ``retry`` the retry alone."""

    @app.task(name="flaky", retry=1, retry_backoff=30, retry_jitter=False)
    def flaky() -> None:
        raise ConnectionError("down")

    @app.task(name="later")
    def later() -> None: ...

    with app.running_worker():
        retrying = app.add_task("flaky").uuid
        wait_for(lambda: app.get(retrying).status == "retry", what="the retry")  # type: ignore[union-attr]
    delayed = app.send_task("later", delay=60).uuid
    soon = app.send_task("later", delay=5).uuid

    assert _all_pages(app, 2, status="delayed") == [soon, retrying, delayed]
    assert _all_pages(app, 2, status="retry") == [retrying]
    assert _all_pages(app, 2, status="delayed", task_name="later") == [soon, delayed]


def test_a_queue_filter_on_finished_tasks(app: QueueTasks) -> None:
    _register(app)
    mine = [app.send_task("ok", [i], queue="mine").uuid for i in range(3)]
    others = [app.add_task("ok", i).uuid for i in range(3)]
    worker = app.worker(queues=["default", "mine"])
    Starter(app, worker, burst=True).start()
    assert sorted(_all_pages(app, 2, queue="mine")) == sorted(mine)
    assert sorted(_all_pages(app, 2, queue="default", status="success")) == sorted(others)


@pytest.mark.parametrize(
    ("kw", "names"),
    [
        ({"status": "done"}, "status must be one of"),
        ({"limit": 0}, "limit must be a whole number from 1 to 1000"),
        ({"limit": 1001}, "limit must be"),
        ({"before": "nonsense"}, "before must be a cursor"),
        ({"before": "nan:x"}, "before must be a cursor"),
    ],
)
def test_bad_arguments_are_refused_naming_them(app: QueueTasks, kw: dict, names: str) -> None:
    with pytest.raises(TaskOptionError, match=names):
        app.list_tasks(**kw)


def test_an_expired_record_leaves_the_list(redis_app: QueueTasks, redis_url: str) -> None:
    """The index entry of a record that expired is dropped when a page meets it."""
    app = redis_app
    _register(app)
    uuids = [app.add_task("ok", i).uuid for i in range(3)]
    _run_all(app)
    gone = uuids[1]
    keys = Keys.for_app(app.name)
    with redis.Redis.from_url(redis_url) as client:
        client.delete(keys.task(gone))  # as if its ttl ran out
        assert sorted(_all_pages(app, 10, status="success")) == sorted(set(uuids) - {gone})
        assert client.zscore(keys.index_of("success"), gone) is None
        assert client.zscore(keys.index_of("success"), uuids[0]) is not None


def test_tasks_that_ended_in_the_same_millisecond_are_all_listed(app: QueueTasks) -> None:
    """A purge cancels a whole queue in one step: 300 tasks with one end time."""
    _register(app)
    uuids = [app.add_task("ok", i).uuid for i in range(300)]
    assert app.purge_queue("default") == 300
    assert sorted(_all_pages(app, 50, status="cancel")) == sorted(uuids)
    assert sorted(_all_pages(app, 50, task_name="ok")) == sorted(uuids)
