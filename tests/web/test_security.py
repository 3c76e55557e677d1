"""What the dashboard refuses: other host names, cross-site actions, actions in
read-only mode, pages without the token, guessed tokens; and what it never shows: a
Redis password."""

from __future__ import annotations

import re
import time

import pytest
from typer.testing import CliRunner

from qtasks_core import QueueTasks
from qtasks_core.cli import cli
from qtasks_core.web import create_app
from qtasks_core.web._security import SESSION_MAX_AGE, Guard, LoginThrottle, Refusal


@pytest.fixture
def queued(app: QueueTasks) -> str:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    return app.add_task("add", 1, 2).uuid


# -- host names ------------------------------------------------------------------------


def test_without_a_token_only_loopback_names_are_served(app, dashboard) -> None:
    browser = dashboard(app)
    for host in ("localhost:8080", "127.0.0.1", "[::1]:9999", "LOCALHOST"):
        assert browser.get("/", headers={"Host": host}).status_code == 200, host
    refused = browser.get("/", headers={"Host": "evil.example:8080"})
    assert refused.status_code == 400
    assert "not served under the host &#39;evil.example:8080&#39;" in refused.text
    assert "--allowed-host evil.example" in refused.text
    assert app.name not in refused.text and "set-cookie" not in refused.headers
    assert browser.get("/static/htmx.min.js", headers={"Host": "evil.example"}).status_code == 400


def test_an_allowed_host_is_served_and_its_pages_may_act(app, dashboard, queued) -> None:
    browser = dashboard(app, allowed_hosts=["ops.example.com"], base_url="http://ops.example.com")
    assert browser.get("/").status_code == 200
    answer = browser.post(
        "/task/cancel", {"uuid": queued, "csrf": browser.csrf()}, origin="http://ops.example.com"
    )
    assert answer.status_code == 303
    assert app.get(queued).status == "cancel"  # type: ignore[union-attr]


def test_an_allowed_host_with_a_port_is_served_on_that_port_only(app, dashboard) -> None:
    browser = dashboard(app, allowed_hosts=["ops.example.com:8443"])
    assert browser.get("/", headers={"Host": "ops.example.com:8443"}).status_code == 200
    assert browser.get("/", headers={"Host": "ops.example.com:9000"}).status_code == 400


def test_an_allowed_host_that_is_not_a_host_name_is_refused(app) -> None:
    for bad in ("https://ops.example.com/", "*", "", "ops.example.com:http"):
        with pytest.raises(ValueError, match="is not a host name"):
            create_app(app, allowed_hosts=[bad])


def test_with_a_token_any_host_name_gets_the_login_page(app, dashboard) -> None:
    browser = dashboard(app, token="s3cret-token", base_url="https://ops.example.com")
    page = browser.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


# -- cross-site requests ---------------------------------------------------------------


def test_an_action_without_the_csrf_field_is_refused(app, dashboard, queued) -> None:
    browser = dashboard(app)
    browser.csrf()
    answer = browser.post("/task/cancel", {"uuid": queued})
    assert answer.status_code == 403 and "CSRF token is missing" in answer.text
    assert app.get(queued).status == "new"  # type: ignore[union-attr]


def test_an_action_with_another_sessions_token_is_refused(app, dashboard, queued) -> None:
    browser = dashboard(app)
    browser.csrf()
    answer = browser.post("/task/cancel", {"uuid": queued, "csrf": "forged"})
    assert answer.status_code == 403 and "does not match" in answer.text
    assert app.get(queued).status == "new"  # type: ignore[union-attr]


def test_an_action_from_another_origin_is_refused(app, dashboard, queued) -> None:
    browser = dashboard(app)
    token = browser.csrf()
    answer = browser.post(
        "/task/cancel", {"uuid": queued, "csrf": token}, origin="https://evil.example"
    )
    assert answer.status_code == 403 and "comes from https://evil.example" in answer.text
    cross = browser.client.post(
        "/task/cancel",
        data={"uuid": queued, "csrf": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403 and "cross-site" in cross.text
    assert app.get(queued).status == "new"  # type: ignore[union-attr]


def test_an_action_from_an_origin_that_is_not_an_allowed_host_is_refused(
    app, dashboard, queued
) -> None:
    browser = dashboard(app)
    token = browser.csrf()
    for origin in ("http://evil.example:8080", "null"):
        answer = browser.post("/task/cancel", {"uuid": queued, "csrf": token}, origin=origin)
        assert answer.status_code == 403 and f"comes from {origin}" in answer.text
    assert app.get(queued).status == "new"  # type: ignore[union-attr]


def test_a_form_of_one_host_name_is_refused_under_another(app, dashboard, queued) -> None:
    browser = dashboard(app)
    token = browser.csrf()  # from a page of 127.0.0.1:8080
    cookie = browser.client.cookies["qtasks_csrf"]
    answer = browser.client.post(
        "/task/cancel",
        data={"uuid": queued, "csrf": token},
        headers={
            "Host": "localhost:8080",
            "Origin": "http://localhost:8080",
            "Cookie": f"qtasks_csrf={cookie}",
        },
    )
    assert answer.status_code == 403 and "does not match this browser session and host" in (
        answer.text
    )
    assert app.get(queued).status == "new"  # type: ignore[union-attr]


def test_an_action_without_an_origin_header_passes_on_its_csrf_token(
    app, dashboard, queued
) -> None:
    browser = dashboard(app)
    answer = browser.post("/task/cancel", {"uuid": queued, "csrf": browser.csrf()}, origin=None)
    assert answer.status_code == 303
    assert app.get(queued).status == "cancel"  # type: ignore[union-attr]


def test_an_action_that_is_not_a_form_is_refused(app, dashboard, queued) -> None:
    browser = dashboard(app)
    browser.csrf()
    answer = browser.client.post("/task/cancel", json={"uuid": queued})
    assert answer.status_code == 415 and "takes an HTML form" in answer.text


def test_the_csrf_cookie_is_http_only_and_same_site_strict(app, dashboard) -> None:
    cookie = dashboard(app).get("/").headers["set-cookie"]
    assert cookie.startswith("qtasks_csrf=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie


# -- read-only -------------------------------------------------------------------------


def test_read_only_refuses_every_action_and_shows_no_button(app, dashboard, queued) -> None:
    browser = dashboard(app, read_only=True)
    html = browser.get("/").text
    assert "read-only" in html and "data-action" not in html
    assert "data-action" not in browser.get(f"/task?uuid={queued}").text
    for path, field in (
        ("/task/cancel", {"uuid": queued}),
        ("/queues/purge", {"queue": "default"}),
        ("/dead/requeue", {"uuid": queued}),
        ("/dead/delete", {"uuid": queued}),
        ("/task/retry", {"uuid": queued}),
        ("/task/abort", {"uuid": queued}),
    ):
        answer = browser.act(path, **field)
        assert answer.status_code == 403, path
        assert "this dashboard is read-only" in answer.text
    assert app.get(queued).status == "new"  # type: ignore[union-attr]


# -- the token -------------------------------------------------------------------------


def test_with_a_token_pages_need_a_login(app, dashboard) -> None:
    browser = dashboard(app, token="s3cret-token")
    page = browser.get("/tasks?status=new", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Ftasks%3Fstatus%3Dnew"
    poll = browser.get("/", headers={"HX-Request": "true"}, follow_redirects=False)
    assert poll.status_code == 401 and poll.headers["hx-redirect"].startswith("/login")
    assert browser.get("/static/htmx.min.js").status_code == 200  # the login page needs it


def test_the_login_page_tells_nothing_about_the_app(app, dashboard) -> None:
    html = dashboard(app, token="s3cret-token").get("/login").text
    assert app.name not in html and app.backend.location not in html
    assert 'href="/workers"' not in html


def test_a_wrong_token_is_refused(app, dashboard) -> None:
    browser = dashboard(app, token="s3cret-token")
    answer = browser.post("/login", {"csrf": browser.csrf("/login"), "token": "guess"})
    assert answer.status_code == 401 and "Wrong token" in answer.text
    assert "qtasks_auth" not in browser.client.cookies
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_the_right_token_logs_in_and_logging_out_ends_it(app, dashboard, queued) -> None:
    browser = dashboard(app, token="s3cret-token")
    answer = browser.post(
        "/login?next=/workers", {"csrf": browser.csrf("/login"), "token": "s3cret-token"}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/workers"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "s3cret-token" not in cookie  # an HMAC, not the token
    assert browser.get("/").status_code == 200
    assert browser.act("/task/cancel", uuid=queued).status_code == 303
    browser.act("/logout")
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_the_login_never_redirects_to_another_site(app, dashboard) -> None:
    browser = dashboard(app, token="t")
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        answer = browser.post(
            f"/login?next={target}", {"csrf": browser.csrf("/login"), "token": "t"}
        )
        assert answer.headers["location"] == "/", target


def test_wrong_tokens_are_throttled_then_the_right_one_logs_in(app, dashboard) -> None:
    browser = dashboard(app, token="s3cret-token")
    csrf = browser.csrf("/login")
    for _ in range(LoginThrottle.FREE):
        assert browser.post("/login", {"csrf": csrf, "token": "guess"}).status_code == 401
    locked = browser.post("/login", {"csrf": csrf, "token": "guess"})
    assert locked.status_code == 429 and locked.headers["retry-after"] == "1"
    assert "too many wrong tokens" in locked.text
    # Locked out, even the right token is refused: a guess learns nothing meanwhile.
    assert browser.post("/login", {"csrf": csrf, "token": "s3cret-token"}).status_code == 429
    time.sleep(1.1)
    assert browser.post("/login", {"csrf": csrf, "token": "s3cret-token"}).status_code == 303


def test_the_lockout_doubles_and_the_throttle_forgets_the_oldest_address() -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(LoginThrottle.FREE + 3):
        throttle.failed("10.0.0.1")
    with pytest.raises(Refusal, match="Try again in 8 s") as refused:
        throttle.check("10.0.0.1")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "8"}
    for n in range(LoginThrottle.KEEP):  # a flood from many addresses
        throttle.failed(f"10.1.{n // 256}.{n % 256}")
    throttle.check("10.0.0.1")  # forgotten: memory stays bounded


def test_a_login_lasts_its_max_age(app, dashboard) -> None:
    browser = dashboard(app, token="s3cret-token")
    answer = browser.post("/login", {"csrf": browser.csrf("/login"), "token": "s3cret-token"})
    assert f"Max-Age={SESSION_MAX_AGE}" in answer.headers["set-cookie"]
    stale = Guard(token="s3cret-token", read_only=False).login_cookie(
        issued=time.time() - SESSION_MAX_AGE - 60
    )
    browser.client.cookies.set("qtasks_auth", stale)
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_a_script_may_send_the_token_as_a_bearer_header(app, dashboard) -> None:
    browser = dashboard(app, token="s3cret-token")
    assert browser.get("/", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    wrong = browser.get("/", headers={"Authorization": "Bearer nope"}, follow_redirects=False)
    assert wrong.status_code == 303


def test_an_action_without_a_login_is_refused(app, dashboard, queued) -> None:
    browser = dashboard(app, token="s3cret-token")
    answer = browser.post("/task/cancel", {"uuid": queued, "csrf": browser.csrf("/login")})
    assert answer.status_code == 401 and "log in first" in answer.text


def test_an_empty_token_is_refused(app) -> None:
    with pytest.raises(ValueError, match="token is empty"):
        create_app(app, token=" ")


# -- secrets ---------------------------------------------------------------------------


def test_a_redis_password_is_never_shown(dashboard) -> None:
    app = QueueTasks(
        "dash-secret", redis_url="redis://:hunter2@127.0.0.1:1/0", load_entry_points=False
    )
    try:
        page = dashboard(app).get("/")
    finally:
        app.stop()
    assert page.status_code == 503
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in page.text
    assert "hunter2" not in page.text


# -- mounted under another app ---------------------------------------------------------


def test_mounted_under_fastapi_its_links_cookies_and_assets_follow_the_mount(app, queued) -> None:
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    api = FastAPI()
    # Served under the API's own name (the test client's), which it allows.
    api.mount("/ops/qtasks", create_app(app, allowed_hosts=["testserver"]))
    with TestClient(api) as client:
        page = client.get("/ops/qtasks/")
        assert page.status_code == 200
        assert 'href="/ops/qtasks/tasks"' in page.text
        assert 'hx-get="/ops/qtasks/"' in page.text
        assert "Path=/ops/qtasks" in page.headers["set-cookie"]
        script = re.search(r'src="(/ops/qtasks/static/htmx\.min\.js\?v=\w+)"', page.text)
        assert script is not None and client.get(script.group(1)).status_code == 200
        token = re.search(r'name="csrf-token" content="(\w+)"', page.text).group(1)  # type: ignore[union-attr]
        answer = client.post(
            "/ops/qtasks/task/cancel",
            data={"uuid": queued, "csrf": token},
            headers={"Origin": "http://testserver"},
            follow_redirects=False,
        )
        assert answer.headers["location"].startswith("/ops/qtasks/task?")
    assert app.get(queued).status == "cancel"  # type: ignore[union-attr]


# -- the command -----------------------------------------------------------------------


def test_qtasks_web_without_the_extra_names_it(monkeypatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "uvicorn", None)
    result = CliRunner().invoke(cli, ["web", "-A", "apps.sample:app"])
    assert result.exit_code == 2
    assert "pip install 'qtasks-core[web]'" in result.output


def test_qtasks_web_refuses_a_bad_allowed_host() -> None:
    result = CliRunner().invoke(
        cli, ["web", "-A", "apps.sample:app", "--allowed-host", "https://ops.example.com/"]
    )
    assert result.exit_code == 2
    assert "--allowed-host: allowed host 'https://ops.example.com/' is not a host name" in (
        result.output
    )


def test_qtasks_web_refuses_an_empty_token_and_a_bad_root_path() -> None:
    empty = CliRunner().invoke(cli, ["web", "-A", "x:app", "--token", ""])
    assert empty.exit_code == 2 and "--token is empty" in empty.output
    bad = CliRunner().invoke(cli, ["web", "-A", "x:app", "--root-path", "qtasks/"])
    assert bad.exit_code == 2 and "--root-path 'qtasks/'" in bad.output
