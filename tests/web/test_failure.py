"""A failed task's page explains the failure: the exception first, then the traceback
with the user's frames in view and QTasks' own folded, and the attempt's times."""

from __future__ import annotations

import re

from qtasks_core import QueueTasks

from .conftest import make_dead_letter


def declare(app: QueueTasks) -> None:
    def parse_row(row: str) -> int:
        return int(row)

    @app.task
    def import_rows(rows: list[str]) -> int:
        try:
            return sum(parse_row(row) for row in rows)
        except ValueError as exc:
            raise RuntimeError(f"row {rows!r} is not a number") from exc


def test_the_page_starts_with_the_exception_and_folds_qtasks_frames(app, dashboard) -> None:
    declare(app)
    with app.running_worker():
        task = app.add_task("import_rows", ["1", "two"], timeout=20)
    assert task.status == "error"
    html = dashboard(app).get(f"/task?uuid={task.uuid}").text
    main = html.split("<main>")[1]
    # The summary comes before anything else of the task: its type, then its message.
    failure = re.search(r'<section class="failure" data-failure>(.*?)</section>', main, re.S)
    assert failure is not None
    assert main.index("data-failure") < main.index('class="panel detail"')
    assert '<span class="exc-type" data-exc-type>RuntimeError</span>' in failure.group(1)
    assert "row [&#39;1&#39;, &#39;two&#39;] is not a number" in failure.group(1)
    assert "on attempt 1" in failure.group(1) and "after running" in failure.group(1)
    # Two exceptions: the cause, then the one that ended the task, linked as Python says.
    trace = main[main.index("data-traceback") :]
    assert trace.count('<div class="chained">') == 2
    assert "The above exception was the direct cause of the following exception:" in trace
    exceptions = re.findall(r"<pre class=\"tb-exception\" data-exception>([^<]*)</pre>", trace)
    assert exceptions[0].startswith("ValueError: invalid literal for int()")
    assert exceptions[1] == "RuntimeError: row [&#39;1&#39;, &#39;two&#39;] is not a number"
    # QTasks' frames are folded; the user's are not, the innermost of them marked.
    folds = re.findall(r'data-own-frames="(\d+)"><summary>(\d+) QTasks frames?', trace)
    assert folds and all(a == b and int(a) >= 1 for a, b in folds)
    outside = re.sub(r"<details.*?</details>", "", trace, flags=re.S)
    # The cause's frames are the user's too; the innermost is the final exception's.
    assert re.search(r'data-frame="user">.*in <b>parse_row</b>', outside)
    innermost = re.findall(
        r'class="frame user innermost" data-frame="user">[^\n]*in <b>(\w+)', outside
    )
    assert innermost == ["import_rows"]
    assert 'data-frame="own"' not in outside
    # Every frame is still there, folded or not, and the text as stored to copy.
    assert "qtasks_core" in trace and "As stored (to copy)" in trace


def test_the_page_shows_when_the_attempt_was_queued_started_and_ended(app, dashboard) -> None:
    declare(app)
    with app.running_worker():
        task = app.add_task("import_rows", ["x"], timeout=20)
    html = dashboard(app).get(f"/task?uuid={task.uuid}").text
    run = re.search(r"<section class=\"panel detail\" data-run>(.*?)</section>", html, re.S)
    assert run is not None
    assert re.search(r"data-enqueued>\d{4}-\d\d-\d\d [\d:]+ UTC", run.group(1))
    assert re.search(
        r"data-started>[\d: -]+UTC <span class=\"hint\">after \d+ ms in the queue", run.group(1)
    )
    assert re.search(
        r"data-finished>[\d: -]+UTC <span class=\"hint\">after running \d+ ms", run.group(1)
    )


def test_a_queued_task_shows_it_has_not_started(app, dashboard) -> None:
    declare(app)
    task = app.add_task("import_rows", ["1"])
    html = dashboard(app).get(f"/task?uuid={task.uuid}").text
    assert "data-failure" not in html and "data-traceback" not in html
    assert "data-started>not yet</dd>" in html and "data-finished>not yet</dd>" in html


def test_a_failure_text_of_another_shape_is_shown_whole(app, dashboard) -> None:
    declare(app)
    uuid = make_dead_letter(app, "import_rows", ["1"])
    html = dashboard(app).get(f"/task?uuid={uuid}").text
    failure = re.search(r'<section class="failure" data-failure>(.*?)</section>', html, re.S)
    assert failure is not None
    assert "data-exc-type>Failed</span>: " in failure.group(1)
    assert "kept killing its workers" in failure.group(1)
    assert '<pre class="code traceback">kept killing its workers' in html
    assert "data-own-frames" not in html


def test_every_attempt_is_listed_and_a_success_after_failures_shows_no_failure(
    app, dashboard
) -> None:
    runs: list[int] = []

    @app.task(retry=2, retry_backoff=0.05, retry_jitter=False)
    def flaky() -> str:
        runs.append(1)
        if len(runs) < 3:
            raise ConnectionError(f"try {len(runs)} refused")
        return "done"

    with app.running_worker():
        task = app.add_task("flaky", timeout=20)
    assert task.status == "success"
    main = dashboard(app).get(f"/task?uuid={task.uuid}").text.split("<main>")[1]
    # It succeeded: the record's last traceback is an earlier attempt's, not a failure.
    assert "data-failure" not in main
    table = re.search(r"<section class=\"panel\" data-attempts>(.*?)</section>", main, re.S)
    assert table is not None
    rows = re.findall(r'<tr data-attempt="(\d+)">(.*?)</tr>', table.group(1), re.S)
    assert [number for number, _ in rows] == ["1", "2", "3"]
    first, second, last = (row for _, row in rows)
    assert "ConnectionError: try 1 refused" in first and "waited" in first
    assert "ConnectionError: try 2 refused" in second and "waited" in second
    assert "s-success" in last and "refused" not in last
    # Each row names its worker and when it ran.
    assert all("<code>" in row and "UTC" in row for _, row in rows)


def test_a_retried_task_links_to_what_it_came_from_and_back(app, dashboard) -> None:
    declare(app)
    with app.running_worker():
        failed = app.add_task("import_rows", ["x"], timeout=20)
    again = app.retry(failed.uuid)
    client = dashboard(app)
    new_page = client.get(f"/task?uuid={again.uuid}").text
    assert f'href="/task?uuid={failed.uuid}" data-retried-from>' in new_page
    old_page = client.get(f"/task?uuid={failed.uuid}").text
    assert f'href="/task?uuid={again.uuid}" data-retried-as>' in old_page
