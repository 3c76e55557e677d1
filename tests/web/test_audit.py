"""Every action is audited (a ``qtasks.web.audit`` log line and the app's audit log,
listed on the Audit page), and logins end after their max age and when left unused."""

from __future__ import annotations

import logging
import re
import time

import pytest

from qtasks_core import QueueTasks
from qtasks_core.web import create_app
from qtasks_core.web._security import Guard

from .conftest import make_dead_letter

TOKEN = "s3cret-token"


def declare(app: QueueTasks) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b


def rows(html: str) -> list[tuple[str, str, str]]:
    """(who, action, outcome) of each row of the Audit page, newest first."""
    return re.findall(
        r'<tr data-audit="[^"]+">\s*<td[^>]*>[^<]*</td>\s*<td data-who>([^<]*)</td>\s*'
        r"<td>[^<]*</td>\s*<td><code>([^<]*)</code></td>\s*<td[^>]*>[^<]*</td>\s*"
        r"<td[^>]*>([^<]*)</td>",
        html,
    )


def log_in(browser, name: str = "", token: str = TOKEN):  # type: ignore[no-untyped-def]
    return browser.post("/login", {"csrf": browser.csrf("/login"), "token": token, "who": name})


def test_actions_are_audited_with_who_what_and_outcome(app, dashboard, caplog) -> None:
    declare(app)
    dead = make_dead_letter(app, "add", 3, 4)
    queued = app.add_task("add", 1, 2).uuid
    browser = dashboard(app, token=TOKEN)
    with caplog.at_level(logging.INFO, logger="qtasks.web.audit"):
        log_in(browser, token="guess", name="mallory")
        assert log_in(browser, name="Ann Operator").status_code == 303
        browser.act("/task/cancel", uuid=queued)
        browser.act("/task/cancel", uuid=queued)  # not cancelled twice: the outcome says so
        browser.act("/dead/delete", uuid=dead)
        browser.act("/queues/purge", queue="default")
        browser.post("/task/cancel", {"uuid": queued, "csrf": "forged"})
        browser.act("/logout")
    seen = dashboard(app, token=TOKEN)
    log_in(seen, name="Bo")
    page = seen.get("/audit").text
    assert rows(page)[:8] == [
        ("Bo", "login", "ok"),
        ("Ann Operator", "logout", "ok"),
        (
            "Ann Operator",
            "cancel",
            "refused (403): refused: the form&#39;s CSRF token is missing or does not "
            "match this browser session and host. Reload the page and try again.",
        ),
        ("Ann Operator", "purge", "purged (count 0)"),
        ("Ann Operator", "delete", "deleted"),
        ("Ann Operator", "cancel", "not-cancelled"),
        ("Ann Operator", "cancel", "cancelled"),
        ("Ann Operator", "login", "ok"),
    ]
    assert rows(page)[8] == ("mallory", "login", "wrong token")
    assert f'<td class="target">{queued}</td>' in page
    assert '<a href="/audit"' in page  # in the navigation
    # The same as log lines; neither holds a secret.
    lines = [r.getMessage() for r in caplog.records if r.name == "qtasks.web.audit"]
    assert any(line.startswith("Ann Operator (testclient) cancel " + queued) for line in lines)
    everything = page + "\n".join(lines)
    assert TOKEN not in everything and "guess" not in everything and "forged" not in everything
    assert browser.client.cookies.get("qtasks_csrf", "?") not in everything


def test_a_script_is_audited_as_api_and_no_token_as_the_address(app, dashboard) -> None:
    declare(app)
    queued = app.add_task("add", 1, 2).uuid
    browser = dashboard(app, token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    token = browser.csrf("/login")
    answer = browser.client.post(
        "/task/cancel", data={"uuid": queued, "csrf": token}, headers=bearer, follow_redirects=False
    )
    assert answer.status_code == 303
    assert rows(browser.get("/audit", headers=bearer).text)[0] == ("api", "cancel", "cancelled")
    open_one = dashboard(app)
    open_one.act("/task/retry", uuid=queued)
    [(who, action, outcome)] = rows(open_one.get("/audit").text)[:1]
    assert (who, action) == ("testclient", "retry") and outcome.startswith("retried as ")


def test_the_audit_keeps_its_newest_entries_paged(app, dashboard) -> None:
    declare(app)
    browser = dashboard(app)
    token = browser.csrf()
    for n in range(55):
        browser.post("/task/cancel", {"csrf": token, "uuid": f"task-{n}"})
    first = browser.get("/audit").text
    assert len(rows(first)) == 50 and "task-54" in first and "task-4<" not in first
    older = re.search(r'href="(/audit\?page=1)" rel="next"', first)
    assert older is not None
    second = browser.get(older.group(1)).text
    assert len(rows(second)) == 5 and "task-0<" in second
    assert browser.get("/audit?page=-1").status_code == 400


def test_a_login_ends_when_unused_for_its_idle_time(app, dashboard) -> None:
    browser = dashboard(app, token=TOKEN, session_idle=60)
    log_in(browser, name="Ann")
    page = browser.get("/").text
    ends = re.search(r'data-session-ends="(\d+)"[^>]*>Ann · until ([^<]+)</span>', page)
    assert ends is not None and abs(int(ends.group(1)) - (time.time() + 60)) < 5
    guard = Guard(token=TOKEN, read_only=False, session_idle=60)
    now = time.time()
    # Used 50 s ago: still in; 70 s ago: out, though issued within the max age.
    browser.client.cookies.set("qtasks_auth", guard.login_cookie(now - 100, seen=now - 50))
    assert browser.get("/", follow_redirects=False).status_code == 200
    browser.client.cookies.set("qtasks_auth", guard.login_cookie(now - 100, seen=now - 70))
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_a_page_renews_the_session_and_a_poll_does_not(app, dashboard) -> None:
    browser = dashboard(app, token=TOKEN, session_idle=600)
    guard = Guard(token=TOKEN, read_only=False, session_idle=600)
    now = time.time()
    browser.client.cookies.set("qtasks_auth", guard.login_cookie(now - 300, seen=now - 300))
    poll = browser.get("/workers", headers={"HX-Request": "true"})
    assert poll.status_code == 200 and "qtasks_auth" not in poll.headers.get("set-cookie", "")
    page = browser.get("/workers")
    assert "qtasks_auth=" in page.headers["set-cookie"]
    sent = re.search(r"qtasks_auth=([^;]+);", page.headers["set-cookie"])
    assert sent is not None
    renewed = guard.session(_request(sent.group(1)))
    assert renewed is not None and renewed.seen >= int(now) - 1 and renewed.issued == int(now - 300)


def test_a_session_cookie_cannot_be_given_another_name(app, dashboard) -> None:
    guard = Guard(token=TOKEN, read_only=False)
    issued, seen, _name, proof = guard.login_cookie(name="Ann").split(".")
    forged = ".".join([issued, seen, "Qm9i", proof])  # "Bob"
    assert guard.session(_request(forged)) is None
    assert guard.session(_request(guard.login_cookie(name="Ann"))).name == "Ann"  # type: ignore[union-attr]


@pytest.mark.parametrize("options", [{"session_idle": 0}, {"session_max_age": -1}])
def test_a_session_length_that_is_no_positive_number_is_refused(app, options) -> None:
    with pytest.raises(ValueError, match="whole number of seconds"):
        create_app(app, token=TOKEN, **options)


def _request(cookie: str | None):  # type: ignore[no-untyped-def]
    from starlette.requests import Request

    headers = [(b"cookie", f"qtasks_auth={cookie}".encode())]
    return Request({"type": "http", "headers": headers, "method": "GET", "path": "/"})
