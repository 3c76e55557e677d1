"""Helpers shared by the test modules."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The checkout under test: its packages come first in a child process, ahead of any
#: other copy of QTasks installed on the machine.
REPO = Path(__file__).resolve().parents[1]


def pythonpath(*folders: Path) -> str:
    """``PYTHONPATH`` for a child process that imports test apps from ``folders`` and
    QTasks from the checkout under test."""
    return os.pathsep.join([*map(str, folders), str(REPO)])


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "it") -> Any:
    """Poll ``predicate`` (a test's own condition) until it is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
