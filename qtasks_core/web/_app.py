"""The dashboard as an ASGI app: :func:`create_app`.

Every page is one Starlette route that renders either the whole page or, for htmx's
poll (``HX-Request: true``), only its live fragment: one request per view every 2 s,
each answered from a fixed number of backend reads (never one per task; every list is
read a page at a time). A poll sends back the digest of the fragment it holds
(``X-QTasks-Seen``); when nothing changed the answer is an empty 204, which htmx leaves
in place. Actions are POSTs of plain HTML forms that redirect back to a page with a
notice, so they work without JavaScript; :mod:`._security` says what guards them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .._urls import mask_url
from .._validate import check_queue
from ..errors import BackendError, RetriedAlready, TaskOptionError
from ..schemas import Task, TaskStatus, WorkflowNode, WorkflowView
from ..stats import Stats
from ..storage import SEARCH_WINDOW
from . import _traceback
from ._audit import AUDIT_KEEP, Audit
from ._security import (
    SESSION_IDLE,
    SESSION_MAX_AGE,
    Guard,
    Refusal,
    client_address,
    login_name,
)
from ._throughput import DEFAULT_PERIOD, PERIODS, chart

if TYPE_CHECKING:
    from ..app import QueueTasks

__all__ = ["create_app"]

HERE: Final = Path(__file__).resolve().parent
#: How often a page's live fragment is fetched again: fresh enough to watch, light on
#: Redis.
POLL: Final = "2s"
#: Entries per page of every list (tasks, workflows, dead letters).
PAGE_SIZE: Final = 50
#: The header in which htmx's poll sends the digest of the fragment it shows.
SEEN_HEADER: Final = "X-QTasks-Seen"
#: Where a fragment's own digest goes, once the fragment is rendered (see ``render``).
_SEEN_MARK: Final = "qtasks-seen-digest-mark"
#: Largest action form read; the forms hold a token and an id or a queue name.
MAX_FORM: Final = 16_384
#: Statuses in the order a task goes through them.
#: The task list's statuses: every task status, and ``delayed`` (a delay or a retry).
STATUSES: Final = (*(s.value for s in TaskStatus), "delayed")
#: Statuses in which ``app.cancel`` can still stop a task.
CANCELLABLE: Final = frozenset({"new", "retry"})
#: Statuses in which ``app.retry`` sends a task again.
RETRYABLE: Final = frozenset({"error", "cancel"})
#: Statuses in which a task is aborted on its worker (a queued one has Cancel).
ABORTABLE: Final = frozenset({"process"})

#: Statuses of a workflow member that will still change (a workflow's page polls
#: while one is left: members running when a workflow fails finish after it).
UNSETTLED: Final = frozenset({"new", "retry", "process"})

#: The pages, in the order of the navigation bar: (route name, label).
NAV: Final = (
    ("overview", "Overview"),
    ("workers", "Workers"),
    ("tasks", "Tasks"),
    ("workflows", "Workflows"),
    ("dead", "Dead letters"),
    ("schedules", "Schedules"),
    ("audit", "Audit"),
)
#: The views with a live fragment (the others: login, refusals).
LIVE_VIEWS: Final = frozenset(name for name, _ in NAV) | {"task", "workflow"}

#: Sent with every page: no caching (the figures are live), no framing (the action
#: buttons must not be clickjacked), scripts and styles from the dashboard only.
HEADERS: Final = {
    "Cache-Control": "no-store",
    "Vary": "HX-Request",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

#: What an action reports back on the page it redirects to (``?done=<key>``).
NOTICES: Final = {
    "requeued": ("ok", "Dead letter {what} is queued again."),
    "not-dead": (
        "warn",
        "{what} was not requeued: it is not a dead letter (a queued, running or finished "
        "task is never requeued: it would run twice).",
    ),
    "no-record": (
        "warn",
        "{what} was not requeued: no task record is left to run (delete it instead).",
    ),
    "deleted": ("ok", "Dead letter {what} deleted."),
    "not-deleted": ("warn", "{what} is not a dead letter: nothing was deleted."),
    "cancelled": ("ok", "Task {what} cancelled."),
    "not-cancelled": (
        "warn",
        "Task {what} was not cancelled: only a queued task, or one waiting for a retry, can be.",
    ),
    "purged": ("ok", "Queue {what}: {count} queued task(s) cancelled."),
    "retried": ("ok", "Sent again as this new task (a retry of {what})."),
    "abort-cancelled": ("ok", "Task {what} was still waiting: cancelled, it never runs."),
    "abort-aborting": (
        "ok",
        "Task {what} is being aborted: its worker stops it at its next heartbeat.",
    ),
    "abort-ended": ("warn", "Task {what} had ended already: nothing to abort."),
    "abort-unknown": ("warn", "No task has the id {what}: nothing to abort."),
    "workflow-abort-cancelled": (
        "ok",
        "Workflow {what} aborted: it ended cancel, its queued members are cancelled and "
        "its running ones asked to stop.",
    ),
    "workflow-abort-aborting": (
        "ok",
        "Workflow {what} is being aborted: its running members stop at their next heartbeat.",
    ),
    "workflow-abort-ended": ("warn", "Workflow {what} had ended already: nothing to abort."),
    "workflow-abort-unknown": ("warn", "No workflow has the id {what}: nothing to abort."),
    "bulk-retry": (
        "ok",
        "Retry all failed{what}: {count} sent again as new tasks, {skipped} skipped{why}.",
    ),
    "bulk-cancel": ("ok", "Cancel all queued{what}: {count} cancelled, {skipped} skipped{why}."),
    "bulk-delete-dead": (
        "ok",
        "Delete all dead letters{what}: {count} deleted, {skipped} skipped{why}.",
    ),
}
#: Most tasks one bulk action touches (the newest first); its page says when more match.
BULK_MAX: Final = 10_000
#: Bulk actions run this many single actions at a time.
_BULK_CONCURRENCY: Final = 32
_NOTICE_KEYS: Final = ("done", "what", "count", "skipped", "why")

Endpoint = Callable[[Request], Awaitable[Response]]
View = Callable[[Request], Awaitable[Response]]
Action = Callable[[Request, dict[str, str]], Awaitable[Response]]


def create_app(
    app: QueueTasks,
    *,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    session_max_age: int = SESSION_MAX_AGE,
    session_idle: int = SESSION_IDLE,
) -> Starlette:
    """The dashboard of ``app`` as an ASGI application, to serve or to mount.

    ``qtasks web`` serves it with Uvicorn; under FastAPI or Starlette mount it on a
    path of your own (``api.mount("/qtasks", create_app(app))``): its links and cookies
    follow the mount path.

    :param app: the QTasks app to show (started on the first request, on the server's
        event loop).
    :param read_only: refuse every action (requeue, delete, cancel, abort, retry,
        purge, the bulk ones) with 403.
    :param token: require this token to see any page: a login page sets a cookie
        (wrong tokens are throttled) and takes an optional name, which the audit of
        the session's actions shows; scripts may send ``Authorization: Bearer
        <token>`` (audited as ``api``). ``None``: no login (keep the dashboard on
        loopback, or behind a proxy that authenticates); the audit names the client's
        address.
    :param session_max_age: seconds a login lasts at most (12 h by default).
    :param session_idle: seconds a login lasts unused (1 h by default): a page or an
        action renews it, a live page's poll does not.
    :param allowed_hosts: without a token only requests to ``localhost``,
        ``127.0.0.1`` or ``[::1]`` are served (a page of another site cannot reach the
        dashboard by DNS rebinding); these host names are served too, as the browser's
        address bar shows them: ``ops.example.com`` (any port) or
        ``ops.example.com:8443``. Actions must come from a page of one of them.
    :raises ValueError: for an empty token, an allowed host that is not a host name, or
        a session length that is not a positive whole number of seconds.

    Every action is audited (:mod:`._audit`): a line on the ``qtasks.web.audit`` logger
    and an entry on the app's audit log, which the Audit page lists.
    """
    dashboard = _Dashboard(
        app,
        read_only=read_only,
        token=token,
        allowed_hosts=allowed_hosts,
        session_max_age=session_max_age,
        session_idle=session_idle,
    )
    page, action = dashboard.page, dashboard.action
    routes = [
        Route("/", page(dashboard.overview), name="overview"),
        Route("/workers", page(dashboard.workers), name="workers"),
        Route("/tasks", page(dashboard.tasks), name="tasks"),
        Route("/task", page(dashboard.task), name="task"),
        Route("/workflows", page(dashboard.workflows), name="workflows"),
        # Before the detail route: a POST to /workflows/abort is this action, never a
        # workflow named "abort".
        Route(
            "/workflows/abort",
            action(dashboard.abort_workflow),
            methods=["POST"],
            name="abort_workflow",
        ),
        Route("/workflows/{uuid}", page(dashboard.workflow), name="workflow"),
        Route("/dead", page(dashboard.dead), name="dead"),
        Route("/schedules", page(dashboard.schedules), name="schedules"),
        Route("/audit", page(dashboard.audit_page), name="audit"),
        Route("/bulk", page(dashboard.bulk_confirm), name="bulk"),
        Route("/bulk/act", action(dashboard.bulk), methods=["POST"], name="bulk_act"),
        Route("/dead/requeue", action(dashboard.requeue), methods=["POST"], name="requeue"),
        Route("/dead/delete", action(dashboard.delete), methods=["POST"], name="delete"),
        Route("/task/cancel", action(dashboard.cancel), methods=["POST"], name="cancel"),
        Route("/task/retry", action(dashboard.retry), methods=["POST"], name="retry"),
        Route("/task/abort", action(dashboard.abort), methods=["POST"], name="abort"),
        Route("/queues/purge", action(dashboard.purge), methods=["POST"], name="purge"),
        Route("/login", dashboard.login, methods=["GET", "POST"], name="login"),
        Route("/logout", dashboard.logout, methods=["POST"], name="logout"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    web = Starlette(routes=routes, middleware=[Middleware(_HostCheck, dashboard=dashboard)])
    dashboard.web = web
    dashboard.path_params = {
        route.name: tuple(route.param_convertors) for route in routes if isinstance(route, Route)
    }
    return web


class _Dashboard:
    """The views of one dashboard and what they share: the app, the guard and the
    templates."""

    def __init__(
        self,
        app: QueueTasks,
        *,
        read_only: bool,
        token: str | None,
        allowed_hosts: Iterable[str],
        session_max_age: int = SESSION_MAX_AGE,
        session_idle: int = SESSION_IDLE,
    ) -> None:
        self.app = app
        self.guard = Guard(
            token=token,
            read_only=read_only,
            allowed_hosts=allowed_hosts,
            session_max_age=session_max_age,
            session_idle=session_idle,
        )
        self.audit = Audit(app)
        self.web: Starlette | None = None
        #: Each route's path parameters: :meth:`url` puts these in the path, not the query.
        self.path_params: dict[str, tuple[str, ...]] = {}
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(when=_when, ago=_ago, pretty=_pretty, duration=_duration)
        # A content hash in each asset's URL: a browser never runs a stale htmx.
        self.assets = {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            for path in (HERE / "static").iterdir()
        }

    # -- plumbing ----------------------------------------------------------------------

    def url(self, request: Request, name: str, /, **query: Any) -> str:
        """The path of route ``name`` under the dashboard's mount point, with ``query``
        (``None`` values left out); a route's path parameters (``/workflows/{uuid}``)
        are taken from ``query`` into the path."""
        assert self.web is not None
        # Quoted: a uuid typed into the address bar may hold "?" or "#".
        params = {
            key: quote(str(query.pop(key)), safe="") for key in self.path_params.get(name, ())
        }
        path = request.scope.get("root_path", "") + self.web.url_path_for(name, **params)
        given = {k: v for k, v in query.items() if v is not None and v != ""}
        return f"{path}?{urlencode(given)}" if given else path

    def static(self, request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}/static/{name}?v={self.assets[name]}"

    def render(self, request: Request, view: str, *, status: int = 200, **context: Any) -> Response:
        """The page ``view``, or only its live fragment for htmx's poll (an empty 204
        when the fragment is the one the poll says it shows)."""
        live = request.headers.get("hx-request") == "true" and view in LIVE_VIEWS
        template = f"{'fragments' if live else 'pages'}/{view}.html"
        secret = self.guard.csrf_secret(request)
        query = {k: v for k, v in request.query_params.items() if k not in _NOTICE_KEYS}
        html = self.env.get_template(template).render(
            view=view,
            nav=NAV,
            app_name=self.app.name,
            # A backend of a plugin's may not mask its password: mask it here as well.
            backend=mask_url(self.app.backend.location),
            read_only=self.guard.read_only,
            has_token=self.guard.has_token,
            signed_in=self.guard.logged_in(request),
            session=self._session_view(request),
            csrf=self.guard.csrf_token(request, secret),
            # A page's first poll always gets its fragment: only fragments are digested.
            seen=_SEEN_MARK if live else "",
            url=lambda name, **q: self.url(request, name, **q),
            static=lambda name: self.static(request, name),
            # What the live fragment polls: this page, less the notice of an action.
            here=self.url(request, view, **{**query, **request.path_params})
            if view in LIVE_VIEWS
            else "",
            notice=_notice(request),
            poll=POLL,
            statuses=STATUSES,
            **context,
        )
        if live:
            # The digest of the fragment as rendered, marked in place: the next poll
            # sends it back, and gets an empty 204 while the fragment would be the same.
            digest = hashlib.sha256(html.encode()).hexdigest()[:20]
            if request.headers.get(SEEN_HEADER) == digest and status == 200:
                return Response(status_code=204, headers=HEADERS)
            html = html.replace(_SEEN_MARK, digest)
        response = HTMLResponse(html, status_code=status, headers=HEADERS)
        self.guard.remember(request, response, secret)
        return response

    def _session_view(self, request: Request) -> dict[str, Any] | None:
        """The header's line on the login: who, and when it ends unless used again
        (this page renewed it: see :meth:`Guard.renew`)."""
        session = self.guard.session(request)
        if session is None:
            return None
        now = datetime.now(UTC).timestamp()
        ends = min(session.issued + self.guard.session_max_age, now + self.guard.session_idle)
        return {"name": session.name, "ends": ends}

    def refuse(self, request: Request, refusal: Refusal) -> Response:
        """A refusal as a page that says why (a plain line for htmx's poll)."""
        if request.headers.get("hx-request") == "true":
            return HTMLResponse(
                f'<p class="notice warn">{Markup.escape(refusal.message)}</p>',
                status_code=refusal.status,
                headers={**HEADERS, **refusal.headers},
            )
        page = self.render(request, "refused", status=refusal.status, message=refusal.message)
        page.headers.update(refusal.headers)
        return page

    def page(self, view: View) -> Endpoint:
        """``view`` behind the token, with refusals and backend outages as pages."""

        async def endpoint(request: Request) -> Response:
            if not self.guard.logged_in(request):
                return self._to_login(request)
            try:
                response = await view(request)
            except Refusal as refusal:
                response = self.refuse(request, refusal)
            except BackendError as exc:
                response = self.refuse(request, self._outage(exc))
            if request.headers.get("hx-request") != "true":
                self.guard.renew(request, response)  # a poll is no use of the session
            return response

        return endpoint

    def action(self, act: Action) -> Endpoint:
        """``act`` behind the token, refused in read-only mode and from other sites."""

        name = act.__name__.replace("_", "-")

        async def endpoint(request: Request) -> Response:
            # What the audit says it acted on; the action may say more (a bulk filter).
            request.state.audit_target = ""
            try:
                if not self.guard.logged_in(request):
                    raise Refusal(401, "refused: log in first (this dashboard needs a token)")
                self.guard.check_may_act()
                form = await _read_form(request)
                request.state.audit_target = form.get("uuid") or form.get("queue") or ""
                self.guard.check_same_origin(request, form)
                response = await act(request, form)
                outcome = getattr(request.state, "audit_outcome", "ok")
            except Refusal as refusal:
                response = self.refuse(request, refusal)
                outcome = f"refused ({refusal.status}): {refusal.message}"
            except BackendError as exc:
                outage = self._outage(exc)
                response = self.refuse(request, outage)
                outcome = f"failed ({outage.status}): {outage.message}"
            await self._audit(request, name, request.state.audit_target, outcome)
            self.guard.renew(request, response)
            return response

        return endpoint

    async def _audit(self, request: Request, action: str, target: str, outcome: str) -> None:
        await self.audit.record(
            self.guard.who(request), client_address(request), action, target, outcome
        )

    def _outage(self, exc: BackendError) -> Refusal:
        where = mask_url(self.app.backend.location)
        return Refusal(503, f"cannot reach Redis at {where}: {mask_url(str(exc))}")

    def _to_login(self, request: Request) -> Response:
        target = self.url(request, "login", next=_relative(request))
        if request.headers.get("hx-request") == "true":
            # htmx follows this header instead of swapping the login page into a fragment.
            return Response(status_code=401, headers={**HEADERS, "HX-Redirect": target})
        return RedirectResponse(target, status_code=303, headers=HEADERS)

    def back(self, request: Request, view: str, done: str, **query: Any) -> Response:
        """Redirect to ``view`` with the notice ``done`` (after an action), which is
        the action's outcome for the audit too."""
        told = [f"{key} {query[key]}" for key in ("count", "skipped") if key in query]
        request.state.audit_outcome = done + (f" ({', '.join(told)})" if told else "")
        return RedirectResponse(self.url(request, view, done=done, **query), status_code=303)

    # -- pages -------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        period = request.query_params.get("period") or DEFAULT_PERIOD
        if period not in PERIODS:
            raise Refusal(400, f"period {period!r} is not one of {', '.join(PERIODS)}")
        stats = await Stats(self.app).inspect_async()
        history = await chart(self.app.storage, period, time.time())
        served = {q for w in stats.workers for q in w.queues}
        queues = [
            {
                "name": name,
                "total": sum(depth.values()),
                "depth": sorted(depth.items()),
                "served": name in served,
            }
            for name, depth in sorted(stats.queues.items())
        ]
        return self.render(
            request,
            "overview",
            stats=stats,
            counts=stats.status_counts,
            dead=stats.dead,
            history=history,
            periods=PERIODS,
            queues=queues,
        )

    async def workers(self, request: Request) -> Response:
        stats = await Stats(self.app).inspect_async()
        return self.render(request, "workers", workers=sorted(stats.workers, key=lambda w: w.id))

    async def tasks(self, request: Request) -> Response:
        query = request.query_params
        found = query.get("uuid", "").strip()
        if found:
            return RedirectResponse(self.url(request, "task", uuid=found), status_code=303)
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise Refusal(400, f"status {status!r} is not one of {', '.join(STATUSES)}")
        queue = query.get("queue") or None
        task_name = query.get("task_name") or None
        before = query.get("before") or None
        search = query.get("search", "").strip() or None
        try:
            if queue is not None:
                check_queue(queue)
            page = await self.app.list_tasks_async(
                status=status,
                task_name=task_name,
                queue=queue,
                before=before,
                limit=PAGE_SIZE,
                search=search,
            )
        except TaskOptionError as exc:
            raise Refusal(400, str(exc)) from None
        filters = {"status": status, "task_name": task_name, "queue": queue}
        return self.render(
            request,
            "tasks",
            page=page,
            filters=filters,
            search=search,
            window=SEARCH_WINDOW,
            first_page=before is None,
            task_names=sorted(self.app.tasks),
            cancellable=CANCELLABLE,
            retryable=RETRYABLE,
            abortable=ABORTABLE,
        )

    async def task(self, request: Request) -> Response:
        uuid = request.query_params.get("uuid", "").strip()
        if not uuid:
            raise Refusal(400, "give a task id: /task?uuid=<id>")
        task = await self.app.get_async(uuid)
        if task is None:
            raise Refusal(
                404,
                f"no task has the id {uuid!r}: it never existed, or its record expired "
                "(finished tasks are kept for the app's result TTL)",
            )
        failure = _failure(task)
        timeline = [("created", task.created_at)]
        if task.eta is not None:
            timeline.append(("due", task.eta))
        if task.updated_at != task.created_at or task.status != "new":
            timeline.append((task.status, task.updated_at))
        # Only on the whole page: the link sits outside the polled fragment.
        polled = request.headers.get("hx-request") == "true"
        return self.render(
            request,
            "task",
            task=task,
            uuid=uuid,
            workflow=None if polled else await self._workflow_of(task),
            timeline=sorted(timeline, key=lambda item: item[1]),
            failure=failure,
            run=_run_times(task),
            attempts=_attempts(task, failure),
            cancellable=task.status in CANCELLABLE,
            retryable=task.status in RETRYABLE,
            abortable=task.status in ABORTABLE,
        )

    async def _workflow_of(self, task: Task) -> tuple[Task, str] | None:
        """The workflow ``task`` is a step of (its record says), and the step's path."""
        if task.workflow is None:
            return None
        owner = await self.app.get_async(task.workflow)
        return None if owner is None else (owner, task.workflow_path or "?")

    async def workflows(self, request: Request) -> Response:
        return await self._paged(request, "workflows", self.app.list_workflows_async)

    async def _workflow(self, uuid: str) -> WorkflowView:
        flow = await self.app.workflow_async(uuid)
        # Any task's id gives a view; a workflow's always has its tree's root.
        if flow is None or not flow.nodes:
            raise Refusal(
                404,
                f"no workflow has the id {uuid!r}: it never existed, or its record expired "
                "(ended workflows are kept for the app's result TTL)",
            )
        return flow

    async def workflow(self, request: Request) -> Response:
        uuid = request.path_params["uuid"]
        # app.workflow reads each member's record: the one view whose reads grow with
        # what it shows (one per member of this workflow, never one per task stored).
        flow = await self._workflow(uuid)
        task = flow.task
        return self.render(
            request,
            "workflow",
            uuid=uuid,
            task=task,
            tree=_tree(flow.nodes),
            running=task.status == "process" or any(n.status in UNSETTLED for n in flow.nodes),
            abortable=task.status in ABORTABLE,
        )

    async def dead(self, request: Request) -> Response:
        return await self._paged(request, "dead", self.app.dead_letter_page_async)

    async def _paged(
        self, request: Request, view: str, read: Callable[..., Awaitable[Any]]
    ) -> Response:
        """A list view of one page, read from the cursor in ``?before=``."""
        before = request.query_params.get("before") or None
        try:
            page = await read(before=before, limit=PAGE_SIZE)
        except TaskOptionError as exc:
            raise Refusal(400, str(exc)) from None
        return self.render(request, view, page=page, first_page=before is None)

    async def schedules(self, request: Request) -> Response:
        rows = []
        for state in await self.app.schedules_async():
            s = state.schedule
            if s.cron:
                when = f"cron {s.cron} ({s.tz})"
            elif s.every is not None:
                seconds = s.every if isinstance(s.every, float | int) else s.every.total_seconds()
                when = f"every {seconds:g} s"
            else:
                when = f"trigger {s.trigger!r}"
            rows.append({"state": state, "schedule": s, "when": when})
        return self.render(request, "schedules", rows=rows)

    # -- actions -----------------------------------------------------------------------

    async def requeue(self, request: Request, form: dict[str, str]) -> Response:
        uuid = _field(form, "uuid")
        result = await self.app.requeue_dead_async(uuid)
        return self.back(request, "dead", result, what=uuid)

    async def delete(self, request: Request, form: dict[str, str]) -> Response:
        uuid = _field(form, "uuid")
        gone = await self.app.delete_dead_async(uuid)
        return self.back(request, "dead", "deleted" if gone else "not-deleted", what=uuid)

    async def cancel(self, request: Request, form: dict[str, str]) -> Response:
        uuid = _field(form, "uuid")
        done = await self.app.cancel_async(uuid, "cancelled from the dashboard")
        return self.back(
            request, "task", "cancelled" if done else "not-cancelled", uuid=uuid, what=uuid
        )

    async def retry(self, request: Request, form: dict[str, str]) -> Response:
        uuid = _field(form, "uuid")
        try:
            again = await self.app.retry_async(uuid)
        except TaskOptionError as exc:
            raise Refusal(409, f"not sent again: {exc}") from None
        response = self.back(request, "task", "retried", uuid=again.uuid, what=uuid)
        request.state.audit_outcome = f"retried as {again.uuid}"
        return response

    async def abort(self, request: Request, form: dict[str, str]) -> Response:
        uuid = _field(form, "uuid")
        result = await self.app.abort_async(uuid, "aborted from the dashboard")
        return self.back(request, "task", f"abort-{result}", uuid=uuid, what=uuid)

    async def abort_workflow(self, request: Request, form: dict[str, str]) -> Response:
        uuid = _field(form, "uuid")
        await self._workflow(uuid)  # a task's id is refused: the task page aborts tasks
        result = await self.app.abort_async(uuid, "aborted from the dashboard")
        return self.back(request, "workflow", f"workflow-abort-{result}", uuid=uuid, what=uuid)

    async def purge(self, request: Request, form: dict[str, str]) -> Response:
        queue = _field(form, "queue")
        try:
            check_queue(queue)
        except TaskOptionError as exc:
            raise Refusal(400, str(exc)) from None
        count = await self.app.purge_queue_async(queue)
        return self.back(request, "overview", "purged", what=queue, count=count)

    # -- bulk actions ------------------------------------------------------------------

    def _bulk_filter(self, given: Any) -> tuple[_Bulk, str | None, str | None]:
        """The bulk action and filter of a query or a form: (action, task name, queue)."""
        kind = given.get("action", "")
        bulk = BULKS.get(kind)
        if bulk is None:
            raise Refusal(400, f"refused: no bulk action {kind!r} (one of {', '.join(BULKS)})")
        task_name = given.get("task_name", "").strip() or None
        queue = given.get("queue", "").strip() or None
        if bulk.needs_name and task_name is None:
            raise Refusal(400, f"refused: {bulk.title.lower()} needs a task name (task_name=...)")
        if queue is not None and not bulk.by_queue:
            raise Refusal(400, f"refused: {bulk.title.lower()} takes no queue")
        try:
            if queue is not None:
                check_queue(queue)
        except TaskOptionError as exc:
            raise Refusal(400, str(exc)) from None
        return bulk, task_name, queue

    async def _bulk_targets(
        self, bulk: _Bulk, task_name: str | None, queue: str | None
    ) -> tuple[list[tuple[str, str | None]], bool]:
        """What ``bulk`` would act on, newest first, at most :data:`BULK_MAX`: each
        uuid with the reason it will be skipped (``None``: it will be acted on); and
        whether more match. Read a page at a time, as the lists are."""
        found: list[tuple[str, str | None]] = []
        before: str | None = None
        while len(found) <= BULK_MAX:
            if bulk.kind == "delete-dead":
                letters = await self.app.dead_letter_page_async(before=before, limit=1000)
                uuids = [letter["uuid"] for letter in letters.letters]
                if task_name is not None and uuids:
                    records = await self.app.storage.records(uuids)
                    uuids = [
                        u
                        for u, r in zip(uuids, records, strict=True)
                        if r is not None and r.get("task_name") == task_name
                    ]
                found += [(uuid, None) for uuid in uuids]
                before = letters.next
            else:
                page = await self.app.list_tasks_async(
                    status=bulk.status, task_name=task_name, queue=queue, before=before, limit=1000
                )
                for task in page.tasks:
                    why = None
                    if bulk.kind == "retry-failed":
                        if task.is_workflow or task.workflow:
                            why = "a workflow or a step of one"
                        elif task.retried_as is not None:
                            why = "sent again already"
                    found.append((task.uuid, why))
                before = page.next
            if before is None:
                break
        return found[:BULK_MAX], len(found) > BULK_MAX

    async def bulk_confirm(self, request: Request) -> Response:
        """What a bulk action would touch, before it touches anything: its count, its
        filter, and the button that does it."""
        self.guard.check_may_act()
        bulk, task_name, queue = self._bulk_filter(request.query_params)
        targets, more = await self._bulk_targets(bulk, task_name, queue)
        skips: Counter[str] = Counter(why for _, why in targets if why is not None)
        return self.render(
            request,
            "bulk",
            bulk=bulk,
            task_name=task_name,
            queue=queue,
            count=len(targets),
            skipping=sum(skips.values()),
            skip_reasons="; ".join(f"{why}: {n}" for why, n in skips.most_common()),
            more=more,
            limit=BULK_MAX,
            back=self._bulk_back(request, bulk, task_name, queue),
        )

    def _bulk_back(
        self, request: Request, bulk: _Bulk, task_name: str | None, queue: str | None
    ) -> str:
        if bulk.kind == "delete-dead":
            return self.url(request, "dead")
        return self.url(request, "tasks", status=bulk.status, task_name=task_name, queue=queue)

    async def bulk(self, request: Request, form: dict[str, str]) -> Response:
        bulk, task_name, queue = self._bulk_filter(form)
        request.state.audit_target = _filter_text(bulk, task_name, queue)
        targets, more = await self._bulk_targets(bulk, task_name, queue)
        skipped: Counter[str] = Counter(why for _, why in targets if why is not None)
        todo = [uuid for uuid, why in targets if why is None]
        gate = asyncio.Semaphore(_BULK_CONCURRENCY)

        async def one(uuid: str) -> str | None:
            async with gate:
                return await self._bulk_one(bulk, uuid)

        done = 0
        for why in await asyncio.gather(*(one(uuid) for uuid in todo)):
            if why is None:
                done += 1
            else:
                skipped[why] += 1
        reasons = [f"{n} {why}" for why, n in skipped.most_common()]
        if more:
            reasons.append(f"more than {BULK_MAX:,} matched: run it again for the rest")
        what = f" of task {task_name}" if task_name else ""
        if queue is not None:
            what += f" in queue {queue}"
        view, query = (
            ("dead", {})
            if bulk.kind == "delete-dead"
            else ("tasks", {"status": bulk.status, "task_name": task_name, "queue": queue})
        )
        return self.back(
            request,
            view,
            bulk.done,
            what=what,
            count=done,
            skipped=sum(skipped.values()),
            why=f" ({'; '.join(reasons)})" if reasons else "",
            **query,
        )

    async def _bulk_one(self, bulk: _Bulk, uuid: str) -> str | None:
        """Act on one task of a bulk action: ``None`` when done, else why not."""
        if bulk.kind == "retry-failed":
            try:
                await self.app.retry_async(uuid, once=True)
            except RetriedAlready:
                return "sent again already"
            except TaskOptionError:
                return "no longer failed (or gone)"
            return None
        if bulk.kind == "cancel-queued":
            cancelled = await self.app.cancel_async(uuid, "cancelled from the dashboard (bulk)")
            return None if cancelled else "no longer queued (started or ended)"
        deleted = await self.app.delete_dead_async(uuid)
        return None if deleted else "no longer a dead letter"

    # -- the audit ---------------------------------------------------------------------

    async def audit_page(self, request: Request) -> Response:
        given = request.query_params.get("page", "0")
        last = AUDIT_KEEP // PAGE_SIZE - 1
        if not given.isdigit() or int(given) > last:
            raise Refusal(400, f"page must be a whole number from 0 to {last}, not {given!r}")
        number = int(given)
        entries = await self.audit.read((number + 1) * PAGE_SIZE)
        return self.render(
            request,
            "audit",
            entries=entries[number * PAGE_SIZE :],
            number=number,
            older=len(entries) == (number + 1) * PAGE_SIZE and number < last,
            keep=AUDIT_KEEP,
        )

    # -- logging in and out ------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        target = _safe_next(request)
        if not self.guard.has_token:
            return RedirectResponse(target, status_code=303)
        if request.method == "GET":
            return self.render(request, "login", next=target, wrong=False)
        client = client_address(request)
        name = ""
        try:
            # Before the token is compared: a locked-out guess learns nothing.
            self.guard.throttle.check(client)
            form = await _read_form(request)
            name = login_name(form.get("who", ""))
            self.guard.check_same_origin(request, form)
        except Refusal as refusal:
            await self.audit.record(
                name or "?", client, "login", "", f"refused ({refusal.status}): {refusal.message}"
            )
            return self.refuse(request, refusal)
        if not self.guard.token_matches(form.get("token", "")):
            self.guard.throttle.failed(client)
            await self.audit.record(name or "?", client, "login", "", "wrong token")
            return self.render(request, "login", status=401, next=target, wrong=True)
        self.guard.throttle.succeeded(client)
        response = RedirectResponse(target, status_code=303)
        self.guard.log_in(request, response, name)
        await self.audit.record(name or "unnamed", client, "login", "", "ok")
        return response

    async def logout(self, request: Request) -> Response:
        try:
            form = await _read_form(request)
            self.guard.check_same_origin(request, form)
        except Refusal as refusal:
            return self.refuse(request, refusal)
        response = RedirectResponse(self.url(request, "login"), status_code=303)
        await self._audit(request, "logout", "", "ok")
        self.guard.log_out(request, response)
        return response


class _HostCheck:
    """Refuses, before any route, a request sent to a host the dashboard is not served
    under (``Guard.check_host``): a bare page that names nothing of the app."""

    def __init__(self, app: ASGIApp, dashboard: _Dashboard) -> None:
        self.app = app
        self.guard = dashboard.guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Request(scope).headers.get("host", "")
            try:
                self.guard.check_host(host)
            except Refusal as refusal:
                message = Markup.escape(refusal.message)
                page = HTMLResponse(
                    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
                    "<title>Refused · QTasks</title></head><body><h1>Not served under "
                    f'this host name</h1><p id="refusal">{message}</p></body></html>',
                    status_code=refusal.status,
                    headers=HEADERS,
                )
                await page(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- helpers ---------------------------------------------------------------------------


async def _read_form(request: Request) -> dict[str, str]:
    """An action's urlencoded form (read here: Starlette's form parser needs the
    python-multipart package, and these forms are a few short fields)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Refusal(
            415,
            "refused: an action takes an HTML form (application/x-www-form-urlencoded), "
            f"not {kind or 'a body without a content type'}",
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise Refusal(413, f"refused: the form is over {MAX_FORM} bytes")
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def _field(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise Refusal(400, f"refused: the form has no {name}")
    return value


def _notice(request: Request) -> dict[str, str] | None:
    done = request.query_params.get("done")
    if done not in NOTICES:
        return None
    kind, text = NOTICES[done]
    query = request.query_params
    return {
        "kind": kind,
        "text": text.format(**{key: query.get(key, "") for key in _NOTICE_KEYS[1:]}),
    }


@dataclass(frozen=True, slots=True)
class _Bulk:
    """A bulk action: what it acts on and what it says."""

    kind: str
    title: str
    #: The button's verb, and what the touched tasks are called.
    verb: str
    noun: str
    #: The task list's status it acts on (``None``: the dead letters).
    status: str | None
    #: Its notice (see :data:`NOTICES`).
    done: str
    needs_name: bool = False
    by_queue: bool = False


#: The bulk actions, by their ``action=`` name.
BULKS: Final = {
    bulk.kind: bulk
    for bulk in (
        _Bulk("retry-failed", "Retry all failed tasks", "Retry", "failed task", "error",
              "bulk-retry", by_queue=True),
        _Bulk("cancel-queued", "Cancel all queued tasks", "Cancel", "queued task", "new",
              "bulk-cancel", needs_name=True, by_queue=True),
        _Bulk("delete-dead", "Delete all dead letters", "Delete", "dead letter", None,
              "bulk-delete-dead"),
    )
}  # fmt: skip


def _filter_text(bulk: _Bulk, task_name: str | None, queue: str | None) -> str:
    """A bulk action's filter as the audit names it: ``status=error task_name=add``."""
    parts = [f"status={bulk.status}" if bulk.status else "dead letters"]
    parts += [f"task_name={task_name}"] if task_name else []
    parts += [f"queue={queue}"] if queue else []
    return " ".join(parts)


def _relative(request: Request) -> str:
    """The request's path and query, for the login page's way back."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _safe_next(request: Request) -> str:
    """The login page's ``next``, only if it is a path on this dashboard (never
    another site: an open redirect would lend the dashboard's name to a phishing link)."""
    root = request.scope.get("root_path", "")
    given = request.query_params.get("next", "")
    if given.startswith(f"{root}/") and not given.startswith("//") and "\\" not in given:
        return given
    return f"{root}/"


def _failure(task: Task) -> dict[str, Any] | None:
    """What the page of a task that raised shows first: the exception's type and
    message, and its traceback read into frames (``chain`` ``None``: a text of another
    shape, shown whole)."""
    # A task that failed and then succeeded keeps its last failure's traceback on the
    # record: that failure is an earlier attempt's (the attempts table has it).
    if not task.traceback or task.status not in ("error", "retry"):
        return None
    chain = _traceback.parse(task.traceback)
    last = chain[-1] if chain else None
    return {
        "summary": _traceback.summary(task.traceback, chain),
        "chain": chain,
        "innermost": None if last is None else last.innermost_user,
    }


def _span(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end``; ``None`` while either is unknown."""
    return None if start is None or end is None else (end - start).total_seconds()


def _attempts(task: Task, failure: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every attempt the record knows, oldest first: the earlier ones (``history``)
    and the current or last one, from the record's own fields. Empty for a task that
    has not run, or ran once (the page's other panels say it all)."""
    if not task.history:
        return []

    rows = [
        {
            "number": a.attempt,
            "worker": a.worker,
            "started": a.started_at,
            "finished": a.finished_at,
            "ran": _span(a.started_at, a.finished_at),
            "outcome": "lease expired" if a.reason == "lease_expired" else "retry",
            "error": a.error,
            "delay": a.delay,
        }
        for a in task.history
    ]
    error = None
    if failure is not None and failure["summary"].type:
        summary = failure["summary"]
        error = f"{summary.type}: {summary.message}" if summary.message else summary.type
    rows.append(
        {
            "number": task.attempts,
            "worker": task.worker,
            "started": task.started_at,
            "finished": task.finished_at,
            "ran": _span(task.started_at, task.finished_at),
            "outcome": task.status,
            "error": error,
            "delay": None,
        }
    )
    return rows


def _run_times(task: Task) -> dict[str, Any]:
    """When the current attempt was queued, started and ended, and the two spans
    between (``None`` where the record has no time yet)."""

    return {
        "enqueued": task.enqueued_at,
        "started": task.started_at,
        "finished": task.finished_at,
        "waited": _span(task.enqueued_at, task.started_at),
        "ran": _span(task.started_at, task.finished_at),
    }


def _tree(nodes: list[WorkflowNode]) -> list[dict[str, Any]]:
    """A workflow's nodes (flat, in path order) as a tree: ``{"node", "children"}``
    per node, the roots first (``r``, then ``e``, the on_error step)."""
    items: dict[str, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for node in nodes:
        item: dict[str, Any] = {"node": node, "children": []}
        items[node.path] = item
        parent = items.get(node.path.rpartition(".")[0])
        (parent["children"] if parent is not None else roots).append(item)
    return roots


def _as_datetime(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if value is None or value == "":
        return None
    try:
        return datetime.fromtimestamp(float(str(value)), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _when(value: object) -> str:
    """A time as ``2026-12-03 14:05:09 UTC`` (any input the records hold)."""
    moment = _as_datetime(value)
    if moment is None:
        return "—" if value in (None, "") else str(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: object) -> str:
    """A time as an age: ``4 s ago``, ``3 min ago``, ``in 20 s``."""
    moment = _as_datetime(value)
    if moment is None:
        return "—"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 90:
        text = f"{seconds:.0f} s"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 172_800:
        text = f"{seconds / 3600:.0f} h"
    else:
        text = f"{seconds / 86400:.0f} d"
    return f"in {text}" if future else f"{text} ago"


def _duration(seconds: float | None) -> str:
    """A span as people read it: ``12 ms``, ``3.4 s``, ``2 min 05 s``, ``1 h 02 min``."""
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _pretty(value: object) -> str:
    """A value as indented JSON (what the record holds), else its repr."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return repr(value)
