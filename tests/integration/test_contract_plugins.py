"""Plugins that users commonly write, installed by pip as distributions of their own
(``tests/plugins/``), found through their entry points and run by a real ``qtasks
worker`` process on Redis: what each relies on in the trigger contract holds."""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.plugin_venv import Venv, plugin_venv, worker_process
from tests.support import wait_for

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return plugin_venv(tmp_path_factory)


def _worker(
    venv: Venv, redis_url: str, name: str, **extra: str
) -> AbstractContextManager[tuple[subprocess.Popen[bytes], Path]]:
    env = {**venv.env, "QTASKS_REDIS_URL": redis_url, "QTASKS_TEST_APP": name, **extra}
    return worker_process(venv, "apps.contract:app", HERE, env, "-c", "4", log_name=f"{name}.log")


def _producer(venv: Venv, redis_url: str, name: str, script: str) -> dict[str, object]:
    """Run ``script`` in the venv's Python (where the plugins are installed): it enqueues
    with ``app`` and prints one JSON object."""
    code = (
        "import json, os\n"
        "from qtasks_core import QueueTasks\n"
        f"app = QueueTasks({name!r}, redis_url={redis_url!r})\n" + script
    )
    out = venv.run("-c", code)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_request_id_reaches_plain_async_and_generator_tasks_and_their_children(
    venv: Venv, redis_url: str
) -> None:
    name = f"contract-rid-{os.getpid()}"
    with _worker(venv, redis_url, name):
        seen = _producer(
            venv,
            redis_url,
            name,
            "from qtasks_request_id import REQUEST_ID\n"
            "REQUEST_ID.set('req-42')\n"
            "out = {t: app.add_task(t, timeout=30).returning\n"
            "       for t in ('plain_with_child', 'generator', 'async_leaf')}\n"
            "print(json.dumps(out))\n",
        )
    assert seen == {
        "plain_with_child": {"task": "req-42", "child": "req-42"},
        "generator": ["req-42", "req-42"],
        "async_leaf": "req-42",
    }


def test_the_error_reporter_sees_every_failure_and_which_is_final(
    venv: Venv, redis_url: str, tmp_path: Path
) -> None:
    name = f"contract-err-{os.getpid()}"
    report = tmp_path / "errors.jsonl"
    with _worker(venv, redis_url, name, QTASKS_ERROR_REPORT=str(report)):
        done = _producer(
            venv,
            redis_url,
            name,
            "out = [app.add_task(t, timeout=30) for t in ('flaky', 'nobody_has_it')]\n"
            "print(json.dumps({t.task_name: t.status for t in out}))\n",
        )
        assert done == {"flaky": "error", "nobody_has_it": "error"}
        wait_for(lambda: report.exists() and len(report.read_text().splitlines()) == 3)
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    seen = [(r["task"], r["registered"], r["error"], r["retryable"], r["final"]) for r in lines]
    assert sorted(seen) == sorted(
        [
            ("flaky", True, "ConnectionError", True, False),  # retried
            ("flaky", True, "ConnectionError", True, True),  # then failed for good
            ("nobody_has_it", False, "TaskNotFoundError", False, True),
        ]
    )


def test_an_unconfigured_error_reporter_changes_nothing(venv: Venv, redis_url: str) -> None:
    name = f"contract-inert-{os.getpid()}"
    with _worker(venv, redis_url, name):
        done = _producer(
            venv,
            redis_url,
            name,
            "print(json.dumps({'status': app.add_task('async_leaf', timeout=30).status}))\n",
        )
    assert done == {"status": "success"}
