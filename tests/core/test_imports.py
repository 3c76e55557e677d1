"""What each way in loads, seen from a fresh interpreter: ``import qtasks_core`` and
``qtasks --help`` must stay cheap, so the heavy parts (the app, pydantic, redis-py, the
test cases, the dashboard, Cluster and Sentinel support) load on first use only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import qtasks_core

ROOT = Path(qtasks_core.__file__).resolve().parents[1]

HELP = """
import contextlib, io, sys
sys.argv = ["qtasks", *{args!r}]
from qtasks_core.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    with contextlib.suppress(SystemExit):
        main()
assert "Usage:" in out.getvalue(), out.getvalue()
"""

DECLARE = """
from qtasks_core import QueueTasks
app = QueueTasks("demo")

@app.task
def add(a: int, b: int) -> int:
    return a + b
"""


def loaded(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def found(modules: set[str], *names: str) -> list[str]:
    """Which of ``names`` (a package stands for its submodules too) are among ``modules``."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_import_qtasks_core_loads_none_of_the_heavy_parts() -> None:
    modules = loaded("import qtasks_core")
    assert (
        found(
            modules,
            "redis",
            "pydantic",
            "qtasks_core.app",
            "qtasks_core.testcase",
            "qtasks_core.web",
            "qtasks_core.backends",
        )
        == []
    )


def test_an_exported_name_loads_its_module_on_first_use() -> None:
    modules = loaded("import qtasks_core\nqtasks_core.TaskOptionError")
    assert "qtasks_core.errors" in modules
    assert found(modules, "qtasks_core.app", "pydantic") == []


@pytest.mark.parametrize("args", [["--help"], []])
def test_cli_help_loads_neither_the_app_nor_pydantic_nor_redis(args: list[str]) -> None:
    modules = loaded(HELP.format(args=args))
    assert (
        found(modules, "qtasks_core.app", "pydantic", "redis", "qtasks_hooks", "asyncio", "rich")
        == []
    )


@pytest.mark.parametrize("args", [["worker", "--help"], ["server", "--help"]])
def test_a_commands_help_loads_neither_the_app_nor_redis(args: list[str]) -> None:
    """Not pydantic here: typer (0.29) parses the group's own flags, before the
    command's help, through pydantic adapters of its own."""
    modules = loaded(HELP.format(args=args))
    assert found(modules, "qtasks_core.app", "redis", "qtasks_hooks", "asyncio", "rich") == []


def test_declaring_an_app_loads_no_test_cases_workers_or_dashboard() -> None:
    modules = loaded(DECLARE)
    assert (
        found(
            modules,
            "qtasks_core.testcase",
            "qtasks_core.web",
            "qtasks_core.worker",
            "qtasks_core.starter",
            "pydantic_settings",
        )
        == []
    )


def test_declaring_an_app_loads_no_redis_client() -> None:
    assert found(loaded(DECLARE), "redis") == []


def test_declaring_an_app_loads_no_cluster_or_sentinel_support() -> None:
    modules = loaded(DECLARE)
    assert found(modules, "qtasks_core.backends._cluster", "qtasks_core.backends._sentinel") == []


def test_the_pytest_plugin_loads_no_app_until_a_fixture_needs_it() -> None:
    modules = loaded("import qtasks_core.testing")
    assert found(modules, "qtasks_core.app", "redis", "pydantic") == []


def test_the_cli_reads_the_redis_url_from_the_apps_variable() -> None:
    from qtasks_core import app, cli

    assert cli.ENV_REDIS_URL == app.ENV_REDIS_URL
