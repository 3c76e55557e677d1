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


    # A handle is typed by its function: arguments checked, the result typed.
    def typed() -> int | None:
        task: Task[int] = add.add_task(1, 2)
        later = add.with_options(timeout=10, queue="fast").add_task(a=1, b=2)
        old_style = add.add_task(1, 2, timeout=10)  # the original's options: still valid
        return task.returning or later.returning or old_style.returning


    @async_app.task
    async def shout(word: str, times: int = 1) -> str:
        return word.upper() * times


    async def typed_async() -> str | None:
        task = await shout.add_task("hey", times=2)
        return None if task is None else task.returning
""")

WRONG = APP + textwrap.dedent("""

    async def wrong() -> Task:
        return await async_app.add_task("add", 1, 2, timeout=10)


    def also_wrong() -> int:
        return app.get("uuid")


    def wrong_arguments() -> None:
        add.add_task("2", 3)
        add.add_task(1, 2, 3)
        add.with_options(priority=1).add_task(1, "2")


    def wrong_result() -> str | None:
        return add.add_task(1, 2).returning


    async def wrong_async() -> str:
        task = await shout.add_task("hey")
        return task.returning  # a wait that runs out gives None
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


def test_mypy_catches_wrong_arguments_and_wrong_use_of_results(tmp_path: Path) -> None:
    done = mypy(tmp_path, WRONG)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert 'return value type (got "Task[Any] | None", expected "Task[Any]")' in out
    assert 'return value type (got "Task[Any] | None", expected "int")' in out
    # The handle's arguments are the function's, its result the function's return.
    assert (
        'No overload variant of "add_task" of "TaskHandle" matches argument types "str", "int"'
        in out
    )
    assert 'matches argument types "int", "int", "int"' in out
    assert (
        'Argument 2 to "add_task" of "Options" has incompatible type "str"; expected "int"' in out
    )
    assert 'return value type (got "int | None", expected "str | None")' in out
    assert '"Task[str] | None" has no attribute "returning"' in out
    assert "Found 8 errors" in out, out
