"""The ``qtasks`` command line (typer). Presentation lives here, not in the library.

Every error a user can cause (an app path that does not import, a Redis that does
not answer, a bad option) is printed as one line on stderr with exit status 2.

``qtasks --help`` must answer at once: this module imports typer and nothing heavy
(no app, no pydantic, no Redis client, no asyncio); each command imports what it
uses when it runs.
"""

# No ``from __future__ import annotations`` here: typer reads the annotations of every
# command to build the CLI, and string annotations are compiled and evaluated one by
# one (about 40 ms of each ``--help``). Names imported for type checking only are
# quoted instead.
import importlib
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn

import typer
from typer.core import TyperCommand

from ._urls import mask_url
from .errors import BackendError, TaskOptionError

if TYPE_CHECKING:
    from .app import QueueTasks
    from .schemas import DeadLetterPage, Task

#: The app's ``ENV_REDIS_URL``, repeated here: importing it from the app would load the
#: app, pydantic and redis-py to print help (a test keeps the two equal).
ENV_REDIS_URL: Final = "QTASKS_REDIS_URL"
#: Where ``-A``/``--app`` is read from when the command line leaves it out.
ENV_APP: Final = "QTASKS_APP"
#: The distribution whose version ``qtasks --version`` prints.
DISTRIBUTION: Final = "qtasks-core"

# The app's help is its callback's docstring (_options). Plain help and usage errors
# (rich_markup_mode=None): typer's rich rendering imports rich for about 0.2 s, more
# than the rest of `qtasks --help` together.
cli = typer.Typer(
    name="qtasks",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
server_cli = typer.Typer(
    help="The embedded Valkey server (used when no Redis URL is set).",
    rich_markup_mode=None,
)
cli.add_typer(server_cli, name="server")


def _print_version(asked: bool) -> None:
    if not asked:
        return
    # Imported here: reading distribution metadata is no part of every other command.
    from importlib.metadata import PackageNotFoundError, version

    try:
        typer.echo(f"{DISTRIBUTION} {version(DISTRIBUTION)}")
    except PackageNotFoundError:
        fail(f"{DISTRIBUTION} is not installed (run from a source tree): pip install -e .")
    raise typer.Exit()


@cli.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the installed qtasks-core version and exit.",
        ),
    ] = False,
) -> None:
    """QTasks: run workers, enqueue tasks, follow, retry or cancel them, inspect queues,
    manage plugins."""


class _Command(TyperCommand):
    """A command listed in help with the whole first sentence of its docstring."""

    def get_short_help_str(self, limit: int = 45) -> str:
        # Plain help cuts each command's sentence to the terminal's width with "...";
        # the listing wraps long lines itself, so nothing needs cutting.
        return super().get_short_help_str(limit=len(self.help or ""))


AppOption = Annotated[
    str,
    typer.Option(
        "--app",
        "-A",
        envvar=ENV_APP,
        help="The app: 'module:attribute' or 'module:factory()'.",
    ),
]
RedisUrlOption = Annotated[
    str | None,
    typer.Option("--redis-url", envvar=ENV_REDIS_URL, help="Redis URL (default: embedded server)."),
]


def fail(message: str) -> NoReturn:
    """Print one line on stderr and exit 2."""
    typer.echo(f"qtasks: error: {message}", err=True)
    raise typer.Exit(2)


def load_app(path: str, redis_url: str | None = None) -> "QueueTasks":
    """Import ``module:attr`` (or ``module:factory()``) with the current directory on
    ``sys.path``; a Redis URL given on the command line wins over the app's own."""
    if ":" not in path:
        fail(f"--app {path!r} must look like 'module:app' (or 'module:factory()')")
    module_name, attr = path.split(":", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        fail(f"cannot import {module_name!r} for --app {path}: {_one_line(exc)}")
    call = attr.endswith("()")
    name = attr.removesuffix("()")
    target = getattr(module, name, None)
    if target is None:
        fail(f"module {module_name!r} has no attribute {name!r} (from --app {path})")
    if call and not callable(target):
        fail(
            f"--app {path}: {name} is a {type(target).__name__}, not a factory: write "
            f"{module_name}:{name}"
        )
    try:
        app = target() if call else target
    except Exception as exc:
        fail(f"--app {path}: the factory {module_name}.{name}() raised {_one_line(exc)}")
    from .app import BaseQueueTasks, QueueTasks

    if not isinstance(app, BaseQueueTasks):
        fail(f"--app {path} is a {type(app).__name__}, not a QueueTasks app")
    if not isinstance(app, QueueTasks):
        # An app of qtasks_core.asyncio, whose operations are coroutines: the commands
        # block, so they see the same app (its tasks, plugins, settings and connections
        # are one state) through the sync edge.
        blocking = QueueTasks.__new__(QueueTasks)
        blocking.__dict__ = app.__dict__
        app = blocking
    if redis_url:
        app.redis_url = redis_url
    return app


def _one_line(exc: BaseException) -> str:
    """``TypeError: message``, cut to the message's first line: a user's own exception
    is reported in one line, as every other error of the command line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def configure_logging(level: str, fmt: str) -> None:
    if fmt == "json":
        formatter: logging.Formatter = _JsonFormatter()
    else:
        formatter = _TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(level.upper())
    except ValueError:
        fail(f"--log-level {level!r} is not one of debug, info, warning, error")


#: The attributes every log record has: what is not among them came as ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}


class _TextFormatter(logging.Formatter):
    """The standard text format, its time text made once per second: a worker writes a
    line per task, and ``strftime`` was a tenth of each line's cost."""

    _second: int | None = None
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # The fields a line carries (a task's name, uuid, status, duration …), as fields.
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                data.setdefault(key, value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def _start_or_fail(app: "QueueTasks") -> None:
    """Start the app, or exit with the reason on one line."""
    from qtasks_hooks import PluginLoadError

    try:
        app.start()
        app.ping()
    except (PluginLoadError, BackendError, TaskOptionError, RuntimeError) as exc:
        _say_start_failure(app, exc)


async def _started_or_fail(app: "QueueTasks") -> None:
    """:func:`_start_or_fail` on the caller's event loop (the worker's)."""
    from qtasks_hooks import PluginLoadError

    try:
        await app.start_async()
        await app.ping_async()
    except (PluginLoadError, BackendError, TaskOptionError, RuntimeError) as exc:
        _say_start_failure(app, exc)


def _say_start_failure(app: "QueueTasks", exc: Exception) -> NoReturn:
    if isinstance(exc, BackendError):
        doing = "cannot reach" if exc.retryable else "cannot use"
        fail(f"{doing} Redis at {app.backend.location}: {exc}")
    fail(str(exc))


# -- worker ----------------------------------------------------------------------------


@cli.command(cls=_Command)
@cli.command(
    cls=_Command, name="run", help="The original QTasks' name for `qtasks worker` (same options)."
)
def worker(
    app_path: AppOption,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Tasks run at once per process.")
    ] = 16,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="Threads for plain-function tasks (default: concurrency)."),
    ] = None,
    processes: Annotated[
        int, typer.Option("--processes", "-p", min=1, help="Worker processes under one supervisor.")
    ] = 1,
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
    grace: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds running tasks get on SIGTERM before they are handed back."
        ),
    ] = 30.0,
    lease: Annotated[
        float, typer.Option(min=1, help="Seconds before a dead worker's tasks are claimed again.")
    ] = 15.0,
    max_attempts: Annotated[
        int,
        typer.Option(
            min=0, help="Deliveries before a task that keeps killing workers is set aside."
        ),
    ] = 5,
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues",
            "-Q",
            help="Queues to serve, comma-separated (default: every queue the app's tasks "
            "name, and 'default'). They take turns; priority order holds within each.",
        ),
    ] = None,
    schedules: Annotated[
        bool,
        typer.Option(
            help="Fire the app's periodic tasks here too (each tick is enqueued once "
            "however many workers do)."
        ),
    ] = True,
    redis_url: RedisUrlOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    log_format: Annotated[str, typer.Option(help="text or json.")] = "text",
) -> None:
    """Run a worker: claim tasks from Redis and run them until SIGTERM/SIGINT."""
    if log_format not in ("text", "json"):
        fail(f"--log-format {log_format!r} is not 'text' or 'json'")
    configure_logging(log_level, log_format)
    application = load_app(app_path, redis_url)
    if processes > 1:
        raise typer.Exit(_supervise(processes, burst))
    served = None
    if queues is not None:
        from ._validate import check_queue

        served = [q.strip() for q in queues.split(",") if q.strip()]
        try:
            for name in served:
                check_queue(name)
        except TaskOptionError as exc:
            fail(f"--queues: {exc}")
        if not served:
            fail("--queues names no queue: write -Q emails,default")
    runner = application.worker(
        concurrency=concurrency,
        threads=threads,
        lease=lease,
        max_attempts=max_attempts,
        grace=grace,
        queues=served,
        schedules=schedules,
    )
    import asyncio

    from .starter import Starter

    async def run() -> None:
        # Everything on this one loop: starting on the sync portal would keep its
        # thread, loop and Redis connections alive beside the worker's own.
        await _started_or_fail(application)
        _banner(application, runner)
        await Starter(application, runner, burst=burst).run()

    asyncio.run(run())
    # Every task is finished or handed back by now; threads still inside a task that
    # overran max_time or was aborted cannot be killed, so do not wait for them.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _banner(app: "QueueTasks", runner: Any) -> None:
    plugins = [info.name for info in app.pm.plugin_infos()]
    backend = app.backend.location
    if app.embedded_home:
        backend = f"embedded server {backend} (data in {app.embedded_home})"
    logging.getLogger("qtasks.worker").info(
        "QTasks worker %s | app %s | backend %s | concurrency %d | tasks: %s | plugins: %s",
        runner.id,
        app.name,
        backend,
        runner.concurrency,
        ", ".join(sorted(app.tasks)) or "none",
        ", ".join(plugins) or "none",
    )


def _supervise(n: int, burst: bool) -> int:
    """Run ``n`` worker processes; restart one that dies; forward SIGTERM/SIGINT."""
    # The children run the same command line without --processes.
    cleaned: list[str] = []
    skip = False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("--processes", "-p"):
            skip = True
            continue
        if a.startswith("--processes="):
            continue
        cleaned.append(a)
    args = cleaned
    command = [sys.executable, "-m", "qtasks_core", *args]
    log = logging.getLogger("qtasks.supervisor")
    children = [subprocess.Popen(command) for _ in range(n)]
    log.info("supervising %d worker processes: %s", n, [c.pid for c in children])
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        alive = 0
        for index, child in enumerate(children):
            code = child.poll()
            if code is None:
                alive += 1
            elif not stopping and not (burst and code == 0):
                log.warning("worker process %d exited with %s; starting a new one", child.pid, code)
                children[index] = subprocess.Popen(command)
                alive += 1
        if alive == 0:
            return 0
        time.sleep(0.2)


# -- plugins ---------------------------------------------------------------------------


@cli.command(cls=_Command)
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    check: Annotated[bool, typer.Option(help="Load and validate; exit 2 on any error.")] = False,
    hook: Annotated[
        str | None, typer.Option(help="Only plugins implementing this trigger.")
    ] = None,
    app_path: Annotated[
        str | None,
        typer.Option(
            "--app",
            "-A",
            envvar=ENV_APP,
            help="Include an app's own plugins.",
        ),
    ] = None,
) -> None:
    """List the plugins QTasks loads: entry points (and an app's own), with their triggers."""
    from qtasks_hooks import PluginLoadError, get_plugin_manager, load_plugins

    if app_path:
        pm = load_app(app_path).pm
    else:
        from .plugins import register_builtins

        pm = get_plugin_manager()
        register_builtins(pm)
    try:
        load_plugins(pm)
    except PluginLoadError as exc:
        fail(str(exc))
    if hook is not None and not hasattr(pm.hook, hook):
        fail(f"--hook {hook!r} is not a QTasks trigger")
    infos = [i for i in pm.plugin_infos() if hook is None or hook in i.hooks]
    if check:
        typer.echo(f"ok: {len(infos)} plugin(s) valid")
        return
    if as_json:
        typer.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    if not infos:
        typer.echo("no plugins")
    for info in infos:
        origin = f" ({info.distribution} {info.version})" if info.distribution else ""
        typer.echo(f"{info.name}{origin}: {', '.join(info.hooks)}")


# -- stats -----------------------------------------------------------------------------


@cli.command(cls=_Command)
def stats(
    app_path: AppOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    watch: Annotated[float | None, typer.Option(help="Refresh every N seconds.")] = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Live figures: queue lengths by priority, tasks by status, live workers."""
    from .stats import Stats

    application = load_app(app_path, redis_url)
    _start_or_fail(application)
    while True:
        snapshot = Stats(application).inspect()
        if as_json:
            typer.echo(snapshot.model_dump_json(indent=2))
        else:
            if watch:
                # Imported here: a worker process has no use for rich (about 2 MiB).
                from rich.console import Console

                Console().clear()
            _print_stats(snapshot)
        if not watch:
            return
        time.sleep(watch)


@cli.command(cls=_Command)
def events(
    app_path: AppOption,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    after: Annotated[
        str | None,
        typer.Option(help="Start after this stream id ('0': from the oldest kept)."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop after N seconds without a change.")
    ] = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Every task's status changes, live, as any process of the app makes them."""
    from .errors import QTasksError

    application = load_app(app_path, redis_url)
    _start_or_fail(application)
    try:
        for change in application.events(after=after, timeout=timeout):
            if as_json:
                typer.echo(json.dumps(change.to_dict()))
            else:
                typer.echo(_change_line(change))
    except QTasksError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass
    application.stop()


def _change_line(change: Any) -> str:
    at = datetime.fromtimestamp(change.at, tz=UTC).strftime("%H:%M:%S.%f")[:-3]
    reason = f" ({change.reason})" if change.reason else ""
    queue = "" if change.queue == "default" else f" queue {change.queue}"
    worker = f" on {change.worker}" if change.worker and change.status == "process" else ""
    return (
        f"{at} {change.uuid} {change.task_name}{queue}: {change.previous or '-'} -> "
        f"{change.status}{reason} attempt {change.attempt}{worker}"
    )


def _print_stats(s: Any) -> None:
    typer.echo(f"app {s.app} on {s.backend}")
    queued = ", ".join(f"p{p}: {n}" for p, n in sorted(s.queued.items())) or "empty"
    typer.echo(f"queued: {queued} | scheduled: {s.scheduled} | running: {s.running}")
    served = {q for w in s.workers for q in w.queues}
    for name, depth in sorted(s.queues.items()):
        by_priority = ", ".join(f"p{p}: {n}" for p, n in sorted(depth.items())) or "empty"
        note = "" if name in served or not s.workers else " (no live worker serves it)"
        typer.echo(f"  queue {name}: {by_priority}{note}")
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(s.status_counts.items())) or "none"
    typer.echo(f"tasks by status (totals): {counts}")
    typer.echo(f"workers: {len(s.workers)}")
    for w in s.workers:
        typer.echo(
            f"  {w.id} concurrency {w.concurrency}, running {len(w.running)}, "
            f"done {w.tasks_done}, queues {','.join(w.queues) or 'default'}"
        )
    typer.echo("registered tasks: " + (", ".join(t["name"] for t in s.tasks) or "none"))


@cli.command(cls=_Command, name="schedules")
def schedules_command(
    app_path: AppOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    redis_url: RedisUrlOption = None,
) -> None:
    """The app's periodic tasks: each schedule with its last and next run."""
    application = load_app(app_path, redis_url)
    _start_or_fail(application)
    rows = []
    for state in application.schedules():
        s = state.schedule
        when = (s.cron and f"cron {s.cron!r} {s.tz}") or (
            f"every {s.every:g}s" if s.every is not None else f"trigger {s.trigger!r}"
        )
        rows.append(
            {
                "name": s.name,
                "task": s.task_name,
                "when": when,
                "missed": s.missed,
                "queue": s.queue or "default",
                "last_run": state.last_run.isoformat() if state.last_run else None,
                "next_run": state.next_run.isoformat() if state.next_run else None,
                "declared_in": "code" if state.declared_in_code else "backend",
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo("no schedules")
    else:
        for row in rows:
            typer.echo(
                f"{row['name']}: {row['task']} {row['when']} (missed: {row['missed']}, queue "
                f"{row['queue']}, {row['declared_in']}) last {row['last_run'] or 'never'}, "
                f"next {row['next_run'] or 'none'}"
            )
    application.stop()


# -- web -------------------------------------------------------------------------------


@cli.command(cls=_Command)
def web(
    app_path: AppOption,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on (loopback by default: this machine only). Another "
            "needs --token, or --insecure-no-auth."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8080,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show everything, refuse every action.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="QTASKS_WEB_TOKEN",
            help="Require this token (a login page sets a cookie); the environment "
            "variable keeps it out of the process list.",
        ),
    ] = None,
    root_path: Annotated[
        str,
        typer.Option(help="The path prefix a reverse proxy serves the dashboard under (/qtasks)."),
    ] = "",
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Without a token, serve requests to this host name too (repeatable; "
            "ops.example.com or ops.example.com:8443). Only localhost, 127.0.0.1 and "
            "[::1] are served otherwise.",
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Listen on a non-loopback --host without a token: anyone who reaches the "
            "port sees every task's arguments (and may act, unless --read-only).",
        ),
    ] = False,
    session_max_age: Annotated[
        int,
        typer.Option(min=1, help="Seconds a login lasts at most (with --token)."),
    ] = 12 * 3600,
    session_idle: Annotated[
        int,
        typer.Option(
            min=1,
            help="Seconds a login lasts unused (with --token): opening a page or acting "
            "renews it, a live page's poll does not.",
        ),
    ] = 3600,
    redis_url: RedisUrlOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Serve the dashboard: queues, workers, tasks, dead letters, schedules, live.
    Every action taken through it is audited (the Audit page, and the qtasks.web.audit
    log)."""
    import asyncio

    try:
        import uvicorn

        from .web import create_app
        from .web._security import checked_hosts, is_loopback
    except ImportError:
        fail("qtasks web needs the 'web' extra: pip install 'qtasks-core[web]'")
    if token is not None and not token.strip():
        fail("--token is empty: give a token, or leave the option out for no login")
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        fail(f"--root-path {root_path!r} must start with '/' and not end with one: /qtasks")
    exposed = not is_loopback(host) and token is None
    if exposed and not insecure_no_auth:
        fail(
            f"--host {host} without a token lets anyone who reaches the port read every "
            "task (read-only or not): set a token (--token or QTASKS_WEB_TOKEN), or pass "
            "--insecure-no-auth"
        )
    try:
        hosts = list(checked_hosts(allowed_host or []))
    except ValueError as exc:
        fail(f"--allowed-host: {exc}")
    if exposed and not _unspecified(host):
        hosts.append(host)  # the address it listens on is the name it is reached by
    configure_logging(log_level, "text")
    application = load_app(app_path, redis_url)
    dashboard = create_app(
        application,
        read_only=read_only,
        token=token,
        allowed_hosts=hosts,
        session_max_age=session_max_age,
        session_idle=session_idle,
    )
    log = logging.getLogger("qtasks.web")
    if exposed:
        log.warning(
            "the dashboard listens on %s without a token (--insecure-no-auth): anyone who "
            "reaches this port sees every task's arguments%s",
            host,
            "" if read_only else ", and can cancel tasks and purge queues",
        )
    config = uvicorn.Config(
        dashboard,
        host=host,
        port=port,
        root_path=root_path,
        log_level=log_level.lower(),
        # https from a TLS-terminating proxy on this machine (the cookies' Secure flag).
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        lifespan="off",
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        # One loop for the app and the server: the app's connections belong to it.
        await _started_or_fail(application)
        where = f"http://{'[' + host + ']' if ':' in host else host}:{port}{root_path}/"
        log.info(
            "QTasks dashboard for app %s (%s) at %s%s%s",
            application.name,
            application.backend.location,
            where,
            " | read-only" if read_only else "",
            " | token required" if token is not None else "",
        )
        try:
            await server.serve()
        finally:
            await application.stop_async()

    asyncio.run(run())


def _unspecified(host: str) -> bool:
    """Whether ``host`` is a wildcard address (``0.0.0.0``, ``::``): every interface,
    none of them a name the dashboard is reached by."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


# -- add -------------------------------------------------------------------------------


@cli.command(cls=_Command)
def add(
    app_path: AppOption,
    task: Annotated[str, typer.Argument(help="The task's name.")],
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="Positional arguments, converted by the task's annotations (an int "
            "parameter gets 007 as 7, a str one gets 12345 as '12345'); for a parameter "
            "without one, a JSON value, else a string."
        ),
    ] = None,
    kwargs: Annotated[
        str | None, typer.Option("--kwargs", help="Keyword arguments as a JSON object.")
    ] = None,
    priority: Annotated[int | None, typer.Option(help="Lower runs first.")] = None,
    wait: Annotated[
        float | None,
        typer.Option(help="Wait up to N seconds for the task to end; print its status and result."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole task record as JSON.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Send a task name the app does not declare (a worker's app may)."
        ),
    ] = False,
    redis_url: RedisUrlOption = None,
) -> None:
    """Enqueue a task from the shell and print its id; with --wait, its status and result
    (exit 1 if it ended error or cancel)."""
    from .errors import QTasksError

    try:
        kw = json.loads(kwargs) if kwargs else {}
    except json.JSONDecodeError as exc:
        fail(f"--kwargs is not valid JSON: {exc}")
    if not isinstance(kw, dict):
        fail("--kwargs must be a JSON object")
    application = load_app(app_path, redis_url)
    _start_or_fail(application)
    # After start: the app's tasks include every shared_task only from then on.
    if not force and task not in application.tasks:
        fail(_unknown_task(application, task))
    spec = application.tasks.get(task)
    values = _shell_args(spec, args or [])
    try:
        result = application.send_task(task, values, kw, priority=priority, timeout=wait)
    except QTasksError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    elif wait is None:
        typer.echo(result.uuid)
    else:
        typer.echo(_outcome(result))
    application.stop()
    if result.status in ("error", "cancel"):
        raise typer.Exit(1)


def _shell_args(spec: Any, args: list[str]) -> list[Any]:
    """The shell's words as the task's positional arguments: each converted by its
    parameter's annotation, as the worker will (so ``007`` and ``12345`` both reach an
    ``int`` as numbers and a ``str`` as text), and sent in JSON form; a parameter without
    an annotation (or a task this app does not declare) gets a JSON value, else the
    word."""
    import inspect

    from pydantic import ValidationError

    from ._introspect import parameters, type_hints
    from .plugins.pydantic_args import adapter_for

    params: list[inspect.Parameter] = []
    hints: dict[str, Any] = {}
    if spec is not None:
        params = list(parameters(spec.func))[1 if spec.echo else 0 :]
        hints = type_hints(spec.func)
    out: list[Any] = []
    for place, word in enumerate(args):
        param = params[place] if place < len(params) else None
        if param is not None and param.kind is param.VAR_POSITIONAL:
            params = params[:place]  # every word from here is one of *args
            param = None
        annotation = hints.get(param.name, Any) if param is not None else Any
        if annotation is str:
            out.append(word)
            continue
        adapter = adapter_for(annotation)
        if adapter is None:
            # Passed as it came on the worker too: a JSON value, else the word.
            try:
                out.append(json.loads(word))
            except json.JSONDecodeError:
                out.append(word)
            continue
        try:
            try:
                value = adapter.validate_json(word)
            except ValidationError:
                value = adapter.validate_strings(word)
        except ValidationError as exc:
            detail = exc.errors()[0]["msg"] if exc.errors() else str(exc)
            assert param is not None
            fail(
                f"argument {place + 1} ({param.name}: "
                f"{getattr(annotation, '__name__', annotation)}) {word!r}: {detail}"
            )
        out.append(adapter.dump_python(value, mode="json"))
    return out


def _unknown_task(app: "QueueTasks", name: str) -> str:
    """Why ``qtasks add`` refuses ``name``, with the names the user may have meant."""
    import difflib

    known = sorted(app.tasks)
    close = difflib.get_close_matches(name, known, n=3)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    elif known:
        hint = f"its tasks: {', '.join(known[:10])}{', ...' if len(known) > 10 else ''}."
    else:
        hint = "it declares none."
    return (
        f"app {app.name!r} has no task {name!r}: {hint} (--force sends it anyway, for a "
        "worker whose app declares it)"
    )


def _result_json(value: Any) -> str:
    """A result as JSON (what the task returned went through JSON already); ``repr`` of
    what a plugin made that JSON cannot hold."""
    return json.dumps(value, ensure_ascii=False, default=repr)


def _outcome(task: Any) -> str:
    """One line: the task's id and status, then its result, error or cancel reason."""
    if task.status == "success":
        detail = _result_json(task.returning)
    elif task.status == "error":
        detail = _last_line(task.traceback) or "no traceback stored"
    elif task.status == "cancel":
        detail = task.cancel_reason or "no reason given"
    else:
        return f"{task.uuid} {task.status}"
    return f"{task.uuid} {task.status}: {detail}"


def _last_line(text: str | None) -> str:
    """The exception line of a traceback (its last non-blank line)."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


@cli.command(cls=_Command)
def get(
    app_path: AppOption,
    uuid: Annotated[str, typer.Argument(help="The task's id.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole task record as JSON.")
    ] = False,
    redis_url: RedisUrlOption = None,
) -> None:
    """Show a task: its status, result or error (with the traceback), and when it was
    created, started and finished."""
    application = load_app(app_path, redis_url)
    _start_or_fail(application)
    task = application.get(uuid)
    application.stop()
    if task is None:
        fail(f"no task {uuid} (unknown, or its record expired)")
    if as_json:
        typer.echo(task.model_dump_json(indent=2))
        return
    rows: list[tuple[str, Any]] = [
        ("uuid", task.uuid),
        ("task", f"{task.task_name} (queue {task.queue}, priority {task.priority})"),
        ("status", task.status),
    ]
    if task.status == "success":
        rows.append(("result", _result_json(task.returning)))
    elif task.status == "cancel":
        rows.append(("reason", task.cancel_reason or "none given"))
    if task.progress is not None and not task.is_finished:
        rows.append(("progress", _result_json(task.progress.get("value"))))
    rows += [
        ("attempts", task.attempts),
        ("created", task.created_at),
        ("due", task.eta),
        ("expires", task.expires),
        ("started", task.started_at),
        ("finished", task.finished_at),
        ("worker", task.worker),
    ]
    for label, value in rows:
        if value is not None:
            shown = value.isoformat() if isinstance(value, datetime) else value
            typer.echo(f"{label + ':':<10}{shown}")
    if task.status == "error":
        typer.echo("error:")
        for line in (task.traceback or "no traceback stored").rstrip().splitlines():
            typer.echo(f"  {line}")


@cli.command(cls=_Command)
def abort(
    app_path: AppOption,
    uuid: Annotated[str, typer.Argument(help="The task's id.")],
    reason: Annotated[str, typer.Option(help="Stored as the task's cancel_reason.")] = "aborted",
    redis_url: RedisUrlOption = None,
) -> None:
    """Stop a task wherever it is: a queued one never runs, a running one is stopped by
    its worker at its next heartbeat; it ends cancel with the reason."""
    from .errors import QTasksError

    application = load_app(app_path, redis_url)
    _start_or_fail(application)
    try:
        result = application.abort(uuid, reason)
    except QTasksError as exc:
        fail(str(exc))
    said = {
        "cancelled": f"task {uuid} was queued: cancelled, it will not run",
        "aborting": f"task {uuid} is running: its worker stops it at its next heartbeat",
        "ended": f"task {uuid} had ended already: nothing to abort",
        "unknown": f"no task {uuid} (unknown, or its record expired)",
    }
    typer.echo(said[result])
    application.stop()
    if result in ("ended", "unknown"):
        raise typer.Exit(1)


@cli.command(cls=_Command)
def cancel(
    app_path: AppOption,
    uuid: Annotated[str, typer.Argument(help="The task's id.")],
    reason: Annotated[str, typer.Option(help="Stored as the task's cancel_reason.")] = "",
    redis_url: RedisUrlOption = None,
) -> None:
    """Cancel a task that has not started (queued, delayed or waiting for a retry): it
    never runs. A running task is left alone: `qtasks abort` stops one."""
    from .errors import QTasksError

    application = load_app(app_path, redis_url)
    _start_or_fail(application)
    try:
        cancelled = application.cancel(uuid, reason)
        task = None if cancelled else application.get(uuid)
    except QTasksError as exc:
        fail(str(exc))
    application.stop()
    if cancelled:
        typer.echo(f"task {uuid} cancelled: it will not run")
        return
    if task is None:
        typer.echo(f"task {uuid} not cancelled: no such task (unknown, or its record expired)")
    elif task.status == "process":
        typer.echo(f"task {uuid} not cancelled: it is running (qtasks abort stops a running task)")
    else:
        typer.echo(f"task {uuid} not cancelled: it had ended already ({task.status})")
    raise typer.Exit(1)


@cli.command(cls=_Command)
def retry(
    app_path: AppOption,
    uuid: Annotated[
        str | None, typer.Argument(help="The task's id (or --failed for every failed task).")
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every task that ended error (and is still kept).")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="With --failed: only tasks of this name.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    redis_url: RedisUrlOption = None,
) -> None:
    """Send a task that ended error or cancel again, as a new task with its name,
    arguments, queue and priority; with --failed, every task that ended error and was
    not sent again already. The old record stays, linked to the new task: run twice,
    or twice at once (or beside the dashboard's bulk retry), --failed sends each task
    once; a task named by its id is sent again each time."""
    from .errors import QTasksError, RetriedAlready

    if name is not None and not failed:
        fail("--name filters --failed: write qtasks retry --failed --name NAME")
    if (uuid is None) == (not failed):
        fail("give a task's id or --failed (one of the two): qtasks retry UUID")
    if uuid is not None:
        application = load_app(app_path, redis_url)
        _start_or_fail(application)
        try:
            new = application.retry(uuid)
        except QTasksError as exc:
            fail(str(exc))
        typer.echo(f"task {uuid} sent again as {new.uuid}")
        application.stop()
        return
    application = load_app(app_path, redis_url)
    _start_or_fail(application)
    # Read whole before the first send, so that no task sent now is counted or sent twice.
    failed_tasks = list(_failed_tasks(application, name))
    # A task sent again already (its retried_as is set) is not sent twice by a rerun.
    wanted = [task.uuid for task in failed_tasks if task.retried_as is None]
    of = "" if name is None else f" of task {name!r}"
    if not wanted:
        if failed_tasks:
            typer.echo(
                f"every task{of} of app {application.name!r} that ended error "
                f"({len(failed_tasks)}) was sent again already"
            )
        else:
            typer.echo(f"no task{of} of app {application.name!r} ended error")
        application.stop()
        return
    if len(wanted) < len(failed_tasks):
        typer.echo(f"skipping {len(failed_tasks) - len(wanted)} task(s) sent again already")
    question = (
        f"Send again {len(wanted)} task(s){of} that ended error, of app {application.name!r}?"
    )
    if not yes and not typer.confirm(question):
        application.stop()
        raise typer.Exit(1)
    refused = already = 0
    for old in wanted:
        try:
            new = application.retry(old, once=True)
        except RetriedAlready as exc:
            # Sent meanwhile by another run (or the dashboard): skipped, not refused.
            already += 1
            typer.echo(f"{old}: skipped: sent again meanwhile, as {exc.retried_as}")
        except QTasksError as exc:
            refused += 1
            typer.echo(f"{old}: not sent: {exc}")
        else:
            typer.echo(f"{old}: sent again as {new.uuid}")
    sent = len(wanted) - refused - already
    meanwhile = f" ({already} sent again meanwhile)" if already else ""
    typer.echo(f"sent again {sent} of {len(wanted)} task(s){meanwhile}")
    application.stop()
    if refused:
        raise typer.Exit(1)


def _failed_tasks(application: "QueueTasks", name: str | None) -> Iterator["Task"]:
    """Every kept task that ended error (of ``name``), newest first."""
    before = None
    while True:
        page = application.list_tasks(status="error", task_name=name, before=before, limit=500)
        yield from page.tasks
        if page.next is None:
            return
        before = page.next


# -- maintenance -----------------------------------------------------------------------


def _confirmed(app_path: str, redis_url: str | None, yes: bool, question: str) -> "QueueTasks":
    """The started app, once the user said yes to ``question`` (``{}``: the app name)."""
    application = load_app(app_path, redis_url)
    _start_or_fail(application)
    if not yes and not typer.confirm(question.format(repr(application.name))):
        raise typer.Exit(1)
    return application


@cli.command(cls=_Command)
def purge(
    app_path: AppOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    queue: Annotated[
        str | None,
        typer.Option(help="Empty this queue instead: its queued tasks end cancel ('purged')."),
    ] = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Delete finished task records (success, error, cancel) now; queued tasks stay. Not
    `celery purge`, which empties queues: that is --queue NAME here."""
    if queue is not None:
        from ._validate import check_queue

        try:
            check_queue(queue)
        except TaskOptionError as exc:
            fail(f"--queue: {exc}")
        application = _confirmed(
            app_path, redis_url, yes, f"Cancel every task queued on {queue!r} of app {{}}?"
        )
        count = application.purge_queue(queue)
        typer.echo(f"cancelled {count} task(s) queued on {queue!r}")
        application.stop()
        return
    application = _confirmed(app_path, redis_url, yes, "Delete finished tasks of app {}?")
    count = application.purge()
    typer.echo(f"deleted {count} finished task record(s)")
    application.stop()


@cli.command(cls=_Command)
def flush(
    app_path: AppOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    redis_url: RedisUrlOption = None,
) -> None:
    """Delete EVERYTHING of the app: queued, running and finished tasks, config."""
    application = _confirmed(app_path, redis_url, yes, "Delete all data of app {}?")
    application.flush_all()
    typer.echo(f"flushed app {application.name!r}")
    application.stop()


@cli.command(cls=_Command, name="dead")
def dead(
    app_path: AppOption,
    requeue: Annotated[
        list[str] | None, typer.Option(help="Queue these uuids again ('all' for every one).")
    ] = None,
    delete: Annotated[
        list[str] | None, typer.Option(help="Forget these dead letters ('all' for every one).")
    ] = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """List dead letters (tasks set aside with their reason), requeue or delete them."""
    application = load_app(app_path, redis_url)
    _start_or_fail(application)
    if requeue:
        wanted = _dead_uuids(application) if requeue == ["all"] else requeue
        said = {
            "requeued": "requeued",
            "not-dead": "not requeued: not a dead letter (only dead letters are requeued)",
            "no-record": "not requeued: no task record is left to run (delete it with --delete)",
        }
        for uuid in wanted:
            typer.echo(f"{uuid}: {said[application.requeue_dead(uuid)]}")
    elif delete:
        wanted = _dead_uuids(application) if delete == ["all"] else delete
        for uuid in wanted:
            gone = application.delete_dead(uuid)
            typer.echo(f"{uuid}: {'deleted' if gone else 'not a dead letter'}")
    else:
        listed = False
        for page in _dead_pages(application):
            for letter in page.letters:
                typer.echo(f"{letter['uuid']}: {letter.get('reason', '')}")
                listed = True
        if not listed:
            typer.echo("no dead letters")
    application.stop()


def _dead_pages(application: "QueueTasks") -> "Iterator[DeadLetterPage]":
    """Every page of the app's dead letters, newest first: a long list is printed as it
    is read, never held whole with its raw messages."""
    before = None
    while True:
        page = application.dead_letter_page(before=before, limit=500)
        yield page
        if page.next is None:
            return
        before = page.next


def _dead_uuids(application: "QueueTasks") -> list[str]:
    """The ids of every dead letter (read before any is requeued or deleted)."""
    return [letter["uuid"] for page in _dead_pages(application) for letter in page.letters]


@cli.command(cls=_Command, name="migrate-keys")
def migrate_keys(app_path: AppOption, redis_url: RedisUrlOption = None) -> None:
    """Move the app's keys from the names of QTasks < 0.2 to today's (stop old workers
    first)."""
    application = load_app(app_path, redis_url)
    try:
        moved, kept = application.migrate_keys()
    except BackendError as exc:
        fail(f"cannot use Redis at {application.backend.location}: {exc}")
    typer.echo(f"moved {moved} key(s) of app {application.name!r}")
    for key in kept:
        typer.echo(f"left {key}: its new name is taken")
    application.stop()
    if kept:
        raise typer.Exit(1)


# -- the embedded server ---------------------------------------------------------------


@server_cli.command(cls=_Command, name="start")
def server_start() -> None:
    """Start the embedded server (data in ~/.local/state/qtasks, or $QTASKS_HOME)."""
    from . import embedded

    try:
        url = embedded.ensure_server()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        fail(f"cannot start the embedded server: {exc}")
    typer.echo(f"embedded server running at {mask_url(url)} (data in {embedded.home()})")


@server_cli.command(cls=_Command, name="status")
def server_status() -> None:
    """Say whether the embedded server runs, and where."""
    from . import embedded

    url = embedded.status()
    if url is None:
        typer.echo(f"embedded server not running (data folder {embedded.home()})")
        raise typer.Exit(1)
    typer.echo(f"embedded server running at {mask_url(url)} (data in {embedded.home()})")


@server_cli.command(cls=_Command, name="stop")
def server_stop() -> None:
    """Stop the embedded server; its data stays."""
    from . import embedded

    if embedded.stop_server():
        typer.echo("embedded server stopped")
    else:
        typer.echo("embedded server was not running")


def _original_form(args: list[str]) -> list[str]:
    """The original QTasks' ``qtasks -A mod:app run [options]`` as ``qtasks worker -A
    mod:app [options]``."""
    if len(args) >= 3 and args[0] in ("-A", "--app") and args[2] == "run":
        return ["worker", "-A", args[1], *args[3:]]
    if len(args) >= 2 and args[0].startswith("--app=") and args[1] == "run":
        return ["worker", args[0], *args[2:]]
    return args


def main() -> None:
    """Entry point of the ``qtasks`` console script."""
    sys.argv[1:] = _original_form(sys.argv[1:])
    cli()
