"""The dashboard's workflows pages at HTTP level, on the in-memory backend and on a
real Redis server (the ``app`` fixture runs each test on both): the list, a workflow's
tree, its Abort button, and the link from a member's task page."""

from __future__ import annotations

import re

from qtasks_core import QueueTasks, chain, group
from qtasks_core.schemas import Task
from qtasks_core.starter import Starter


def declare(app: QueueTasks) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def total(values: list[int]) -> int:
        return sum(values)

    @app.task
    def boom(values: object) -> None:
        raise ValueError("the workflow page shows this")


def pipeline(app: QueueTasks, last: str = "total") -> Task:
    """Start add(1, 2), then a group adding 10 and 20 to it, then ``last`` of the
    group's results: 36 with ``total``."""
    flow = chain(
        app.signature("add", (1, 2)),
        group(app.signature("add", (10,)), app.signature("add", (20,))),
        app.signature(last),
    )
    return app.start_workflow(flow, name="pipeline")


def run_all(app: QueueTasks) -> None:
    Starter(app, app.worker(), burst=True).start()


def node(html: str, path: str) -> str:
    found = re.search(rf'<li data-node="{re.escape(path)}">(.*?)</li>', html, re.S)
    assert found is not None, f"no node {path} on the page"
    return found.group(1)


def test_the_workflows_page_lists_each_with_its_status(app, dashboard) -> None:
    declare(app)
    ok = pipeline(app)
    browser = dashboard(app)
    running = browser.get("/workflows").text
    row = re.search(rf'<tr data-workflow="{ok.uuid}">.*?</tr>', running, re.S)
    assert row is not None and "s-process" in row.group() and "pipeline" in row.group()
    assert 'href="/workflows"' in running and 'aria-current="page"' in running
    run_all(app)
    failed = pipeline(app, last="boom")
    run_all(app)
    html = browser.get("/workflows").text
    rows = re.findall(r'<tr data-workflow="([^"]+)"', html)
    assert rows == [failed.uuid, ok.uuid]  # newest first
    assert f'href="/workflows/{ok.uuid}"' in html
    assert re.search(rf'data-workflow="{ok.uuid}">.*?s-success', html, re.S)
    assert re.search(rf'data-workflow="{failed.uuid}">.*?s-error', html, re.S)
    fragment = browser.get("/workflows", headers={"HX-Request": "true"}).text
    assert fragment.startswith('<div id="live"') and 'hx-trigger="every 2s"' in fragment


def test_the_workflows_page_is_paginated(app, dashboard, monkeypatch) -> None:
    from qtasks_core.web import _app

    monkeypatch.setattr(_app, "PAGE_SIZE", 2)
    declare(app)
    started = [pipeline(app).uuid for _ in range(3)]
    browser = dashboard(app)
    first = browser.get("/workflows").text
    older = re.search(r'href="([^"]+)" rel="next"', first)
    assert older is not None
    second = browser.get(older.group(1).replace("&amp;", "&")).text
    shown = re.findall(r'<tr data-workflow="([^"]+)"', first + second)
    assert shown == started[::-1] and "« Newest" in second
    assert browser.get("/workflows?before=nonsense").status_code == 400


def test_a_running_workflow_shows_its_tree_and_polls(app, dashboard) -> None:
    declare(app)
    flow = pipeline(app)
    page = dashboard(app).get(f"/workflows/{flow.uuid}")
    assert page.status_code == 200
    html = page.text
    assert "<h1>Workflow <code>" in html and "pipeline" in html
    assert '<a href="/workflows" aria-current="page">Workflows</a>' in html  # its list
    assert 'hx-trigger="every 2s"' in html and f'hx-get="/workflows/{flow.uuid}"' in html
    assert "chain" in node(html, "r") and "3 steps in order" in node(html, "r")
    first = node(html, "r.0")
    assert "s-new" in first and f'href="/task?uuid={flow.uuid}%3Ar.0"' in first
    group_node = re.search(r'<li data-node="r.1">.*?members side by side', html, re.S)
    assert group_node is not None and "group" in group_node.group()
    assert "s-waiting" in node(html, "r.1.0") and "not started yet" in node(html, "r.2")
    assert 'data-action="abort_workflow"' in html


def test_the_on_error_step_reads_apart_from_its_name_and_state(app, dashboard) -> None:
    declare(app)
    flow = chain(app.signature("add", (1, 2)), app.signature("total"))
    started = app.start_workflow(flow, name="guarded", on_error=app.signature("boom"))
    html = dashboard(app).get(f"/workflows/{started.uuid}").text
    # As a browser shows it: inline tags add no space, so words must not run together.
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", node(html, "e")))
    assert "boom not started yet (runs on error)" in text


def test_an_ended_workflow_shows_its_result_and_stops_polling(app, dashboard) -> None:
    declare(app)
    flow = pipeline(app)
    run_all(app)
    html = dashboard(app).get(f"/workflows/{flow.uuid}").text
    assert "s-success" in html.split("<dt>Status</dt>")[1].split("</dd>")[0]
    result = re.search(r"data-result>(.*?)</pre>", html, re.S)
    assert result is not None and result.group(1).strip() == "36"  # 13 + 23
    assert all("s-success" in node(html, p) for p in ("r.0", "r.1.0", "r.1.1", "r.2"))
    assert 'hx-trigger="every' not in html
    assert 'data-action="abort_workflow"' not in html


def test_a_failed_workflow_links_its_failed_member_and_traceback(app, dashboard) -> None:
    declare(app)
    flow = pipeline(app, last="boom")
    run_all(app)
    html = dashboard(app).get(f"/workflows/{flow.uuid}").text
    member = re.search(r"data-failed-member>(.*?)</dd>", html, re.S)
    assert member is not None and f'href="/task?uuid={flow.uuid}%3Ar.2"' in member.group(1)
    assert "ValueError: the workflow page shows this" in html
    assert "s-error" in node(html, "r.2")


def test_an_unknown_workflow_or_a_plain_task_is_a_404(app, dashboard) -> None:
    declare(app)
    plain = app.add_task("add", 1, 2)
    browser = dashboard(app)
    for uuid in ("nope", plain.uuid):
        page = browser.get(f"/workflows/{uuid}")
        assert page.status_code == 404 and "no workflow has the id" in page.text


def test_a_members_task_page_links_its_workflow(app, dashboard) -> None:
    declare(app)
    flow = pipeline(app)
    run_all(app)
    browser = dashboard(app)
    html = browser.get(f"/task?uuid={flow.uuid}%3Ar.1.0").text
    link = re.search(r'<p class="part-of"[^>]*>(.*?)</p>', html, re.S)
    assert link is not None and "part of workflow" in link.group(1)
    assert f'href="/workflows/{flow.uuid}"' in link.group(1) and "r.1.0" in link.group(1)
    plain = app.add_task("add", 1, 2)
    assert 'class="part-of"' not in browser.get(f"/task?uuid={plain.uuid}").text
    # The workflow's own task links its steps.
    own = re.search(
        r'<p class="part-of"[^>]*>(.*?)</p>', browser.get(f"/task?uuid={flow.uuid}").text, re.S
    )
    assert own is not None and f'href="/workflows/{flow.uuid}"' in own.group(1)
    assert "its steps" in own.group(1)


def test_aborting_a_running_workflow_cancels_it(app, dashboard) -> None:
    declare(app)
    flow = pipeline(app)
    browser = dashboard(app)
    answer = browser.act("/workflows/abort", uuid=flow.uuid)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(f"/workflows/{flow.uuid}?done=")
    page = browser.get(answer.headers["location"]).text
    assert f"Workflow {flow.uuid} aborted" in page
    ended = app.get(flow.uuid)
    assert ended is not None and ended.status == "cancel"
    assert ended.cancel_reason == "aborted from the dashboard"
    assert "s-cancel" in node(page, "r.0")  # its queued member cancelled too
    again = browser.act("/workflows/abort", uuid=flow.uuid)
    assert "had ended already" in browser.get(again.headers["location"]).text


def test_aborting_a_workflow_is_refused_read_only_and_for_a_plain_task(app, dashboard) -> None:
    declare(app)
    flow = pipeline(app)
    read_only = dashboard(app, read_only=True)
    page = read_only.get(f"/workflows/{flow.uuid}").text
    assert 'data-action="abort_workflow"' not in page
    refused = read_only.post("/workflows/abort", {"uuid": flow.uuid})
    assert refused.status_code == 403 and "read-only" in refused.text
    plain = app.add_task("add", 1, 2)
    assert dashboard(app).act("/workflows/abort", uuid=plain.uuid).status_code == 404
    task = app.get(flow.uuid)
    assert task is not None and task.status == "process"
    assert app.get(plain.uuid).status == "new"  # type: ignore[union-attr]
