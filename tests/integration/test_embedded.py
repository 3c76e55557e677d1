"""The embedded server is the user's, not the current directory's: processes started
anywhere meet on one server, and a server of the old ``./.qtasks`` default is still
found while it runs. Real Valkey servers, in temporary homes (never the user's own)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtasks_core import embedded
from tests.support import pythonpath

APP = textwrap.dedent("""
    from qtasks_core import QueueTasks

    app = QueueTasks("embedded-dirs", load_entry_points=False)

    @app.task
    def double(x):
        return 2 * x
""")


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user with a home of their own and no Redis URL: the embedded default applies."""
    home = tmp_path / "user"
    home.mkdir()
    for name in ("QTASKS_REDIS_URL", "QTASKS_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    yield home
    embedded.stop_server(home / ".local" / "state" / "qtasks")


def test_a_worker_and_a_producer_in_different_directories_meet(tmp_path: Path, user: Path) -> None:
    project, worker_dir, web_dir = tmp_path / "project", tmp_path / "worker", tmp_path / "web"
    for folder in (project, worker_dir, web_dir):
        folder.mkdir()
    (project / "embedded_app.py").write_text(APP)
    env = {**os.environ, "PYTHONPATH": pythonpath(project)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "qtasks_core", "worker", "-A", "embedded_app:app"],
        env=env,
        cwd=worker_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        produced = subprocess.run(
            [
                sys.executable,
                "-c",
                "from embedded_app import app\n"
                "print(app.add_task('double', 21, timeout=30).returning)",
            ],
            env=env,
            cwd=web_dir,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        worker.terminate()
        worker.wait(30)
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.strip() == "42"
    # One server, in the user's state folder; none in the directories they ran in.
    assert embedded.status(user / ".local" / "state" / "qtasks") is not None
    assert not (worker_dir / ".qtasks").exists() and not (web_dir / ".qtasks").exists()


def test_the_folder_is_the_users_whatever_the_directory(
    tmp_path: Path, user: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    seen = set()
    for name in ("a", "b"):
        monkeypatch.chdir(tmp_path / name)
        seen.add(embedded.home())
    assert seen == {user / ".local" / "state" / "qtasks"}

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert embedded.home() == tmp_path / "state" / "qtasks"
    # A relative XDG_STATE_HOME is invalid by the XDG rules: ignored.
    monkeypatch.setenv("XDG_STATE_HOME", "state")
    assert embedded.home() == user / ".local" / "state" / "qtasks"
    monkeypatch.setenv("QTASKS_HOME", str(tmp_path / "pinned"))
    assert embedded.home() == tmp_path / "pinned"


def test_a_server_still_running_in_the_old_folder_is_kept_until_it_stops(
    tmp_path: Path,
    user: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = tmp_path / "project" / ".qtasks"
    new = user / ".local" / "state" / "qtasks"
    old.parent.mkdir()
    monkeypatch.chdir(old.parent)
    url = embedded.ensure_server(old)  # as the previous default started it
    caplog.set_level(logging.INFO, "qtasks.embedded")
    try:
        assert embedded.home() == old
        assert embedded.home() == old
        notes = [r for r in caplog.records if str(new) in r.getMessage()]
        assert len(notes) == 1 and notes[0].levelno == logging.INFO  # once per process
        assert embedded.ensure_server(embedded.home()) == url
    finally:
        embedded.stop_server(old)
    # Stopped, its data stays where it was, and the user is told where the server is now.
    caplog.clear()
    assert embedded.home() == new
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and f"QTASKS_HOME={old}" in warning[0].getMessage()
