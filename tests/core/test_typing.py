"""A user's app type-checks against the installed QTasks, as a user runs mypy: from
outside the repository, so the package (and its ``py.typed``) is found the way an
editable or a regular install exposes it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

APP = textwrap.dedent("""
    from qtasks_core import QueueTasks, Task
    from qtasks_core.asyncio import QueueTasks as AsyncQueueTasks

    app = QueueTasks("demo")
    async_app = AsyncQueueTasks("demo-async")


    @app.task
    def add(a: int, b: int) -> int:
        return a + b


    def send() -> Task:
        return app.add_task("add", 1, 2, timeout=10)


    async def send_async() -> Task | None:
        # The async app's add_task returns None when the wait runs out.
        return await async_app.add_task("add", 1, 2, timeout=10)


    async def send_either() -> Task:
        return await app.add_task_async("add", 1, 2)
""")

WRONG = APP + textwrap.dedent("""

    async def wrong() -> Task:
        return await async_app.add_task("add", 1, 2, timeout=10)


    def also_wrong() -> int:
        return app.get("uuid")
""")


def mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "user_app.py").write_text(code, encoding="utf-8")
    cache = str(tmp_path / ".cache")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", cache, "user_app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("code", [APP], ids=["app"])
def test_a_user_app_type_checks_under_strict_mypy(tmp_path: Path, code: str) -> None:
    done = mypy(tmp_path, code)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_catches_a_wrong_use_of_the_return_types(tmp_path: Path) -> None:
    done = mypy(tmp_path, WRONG)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'Incompatible return value type (got "Task | None", expected "Task")' in done.stdout
    assert 'Incompatible return value type (got "Task | None", expected "int")' in done.stdout
    assert "Found 2 errors" in done.stdout
