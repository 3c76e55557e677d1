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


def _producer(
    venv: Venv, redis_url: str, name: str, script: str, **extra: str
) -> dict[str, object]:
    """Run ``script`` in the venv's Python (where the plugins are installed): it enqueues
    with ``app`` and prints one JSON object."""
    code = (
        "import json, os\n"
        "from qtasks_core import QueueTasks\n"
        f"app = QueueTasks({name!r}, redis_url={redis_url!r}, events=True)\n" + script
    )
    out = venv.run("-c", code, env={**venv.env, **extra})
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


def test_admission_refuses_by_queue_and_delay_and_logs_what_was_not_added(
    venv: Venv, redis_url: str, tmp_path: Path
) -> None:
    name = f"contract-adm-{os.getpid()}"
    log = tmp_path / "admission.jsonl"
    rules = {
        "QTASKS_CLOSED_QUEUES": "closed",
        "QTASKS_MAX_DELAY": "60",
        "QTASKS_ADMISSION_LOG": str(log),
    }
    seen = _producer(
        venv,
        redis_url,
        name,
        "def outcome(**options):\n"
        "    try:\n"
        "        return app.send_task('async_leaf', **options).status\n"
        "    except Exception as exc:\n"
        "        return type(exc).__name__\n"
        "first = app.send_task('async_leaf', unique_key='k')\n"
        "out = {\n"
        "    'closed': outcome(queue='closed'),\n"
        "    'far': outcome(delay=3600),\n"
        "    'near': outcome(delay=1),\n"
        "    'held': outcome(unique_key='k'),\n"
        "    'holder': first.uuid,\n"
        "}\n"
        "print(json.dumps(out))\n",
        **rules,
    )
    assert {k: seen[k] for k in ("closed", "far", "near", "held")} == {
        "closed": "Refused",  # refused before anything was written: the caller's error
        "far": "Refused",
        "near": "new",
        "held": "new",  # the holder is the answer
    }
    # What passed the before-triggers and was not added is logged with its reason.
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == [{"task": "async_leaf", "reason": "unique_key held", "holder": seen["holder"]}]


def test_large_results_are_offloaded_and_every_read_loads_them_back(
    venv: Venv, redis_url: str, tmp_path: Path
) -> None:
    import redis

    from qtasks_core.keys import Keys

    name = f"contract-off-{os.getpid()}"
    folder = tmp_path / "results"
    folder.mkdir()
    config = {"QTASKS_OFFLOAD_DIR": str(folder), "QTASKS_OFFLOAD_OVER": "500"}
    with _worker(venv, redis_url, name, **config):
        seen = _producer(
            venv,
            redis_url,
            name,
            "waited = app.add_task('big', 1000, timeout=30)\n"
            "small = app.add_task('big', 3, timeout=30)\n"
            "listed = {t.uuid: t.returning for t in app.list_tasks(status='success').tasks}\n"
            "print(json.dumps({\n"
            "    'uuid': waited.uuid,\n"
            "    'waited': waited.returning == list(range(1000)),\n"
            "    'got': app.get(waited.uuid).returning == list(range(1000)),\n"
            "    'listed': listed[waited.uuid] == list(range(1000)),\n"
            "    'small': small.returning,\n"
            "}))\n",
            **config,
        )
    assert {k: seen[k] for k in ("waited", "got", "listed", "small")} == {
        "waited": True,
        "got": True,
        "listed": True,
        "small": [0, 1, 2],
    }
    stored = redis.Redis.from_url(redis_url).hget(
        Keys.for_app(name).task(str(seen["uuid"])), "returning"
    )
    assert stored is not None and b"qtasks-offload:" in stored and len(stored) < 100
    assert len(list(folder.iterdir())) == 1


def test_the_audit_log_sees_every_transition_in_the_process_that_made_it(
    venv: Venv, redis_url: str, tmp_path: Path
) -> None:
    from qtasks_core import QueueTasks

    name = f"contract-audit-{os.getpid()}"
    log = tmp_path / "audit.jsonl"
    with _worker(venv, redis_url, name, QTASKS_AUDIT_LOG=str(log)) as (worker, _):
        seen = _producer(
            venv,
            redis_url,
            name,
            "done = app.add_task('async_leaf', timeout=30)\n"
            "flaky = app.add_task('flaky', timeout=30)\n"
            "later = app.send_task('async_leaf', delay=60)\n"
            "app.cancel(later.uuid, 'changed my mind')\n"
            "print(json.dumps({'done': done.uuid, 'flaky': flaky.uuid, 'later': later.uuid,\n"
            "                  'pid': os.getpid()}))\n",
            QTASKS_AUDIT_LOG=str(log),
        )
        worker_pid = worker.pid
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    # Each process appends after its own call returns, so lines of two processes may
    # land out of order in the file: compared per task as sets, and the order is taken
    # from the event stream, which holds them as Redis made them.
    steps: dict[str, list[tuple[object, ...]]] = {}
    for r in lines:
        who = "producer" if r["pid"] == seen["pid"] else "worker" if r["pid"] == worker_pid else "?"
        steps.setdefault(r["uuid"], []).append((r["previous"], r["status"], r["reason"], who))
    expected: dict[str, list[tuple[object, ...]]] = {
        str(seen["done"]): [
            (None, "new", None, "producer"),
            ("new", "process", None, "worker"),
            ("process", "success", None, "worker"),
        ],
        str(seen["flaky"]): [
            (None, "new", None, "producer"),
            ("new", "process", None, "worker"),
            ("process", "retry", "ConnectionError", "worker"),
            ("retry", "new", None, "worker"),  # fell due: met by the worker's claim
            ("new", "process", None, "worker"),
            ("process", "error", "ConnectionError", "worker"),
        ],
        str(seen["later"]): [
            (None, "delayed", None, "producer"),
            ("delayed", "cancel", "cancelled", "producer"),
        ],
    }
    assert {u: sorted(map(repr, s)) for u, s in steps.items()} == {
        u: sorted(map(repr, s)) for u, s in expected.items()
    }
    # Another process reads the same changes from the app's event stream, in order.
    reader = QueueTasks(name, redis_url=redis_url, load_entry_points=False)
    streamed: dict[str, list[tuple[object, ...]]] = {}
    for c in reader.events(after="0", timeout=0.5):
        streamed.setdefault(c.uuid, []).append((c.previous, c.status, c.reason))
    reader.stop()
    assert streamed == {u: [step[:3] for step in s] for u, s in expected.items()}


def test_timing_reads_the_server_clock_times_of_each_run(
    venv: Venv, redis_url: str, tmp_path: Path
) -> None:
    name = f"contract-timing-{os.getpid()}"
    log = tmp_path / "timing.jsonl"
    with _worker(venv, redis_url, name, QTASKS_TIMING_LOG=str(log)):
        _producer(
            venv,
            redis_url,
            name,
            "out = [app.add_task('nap', s, timeout=30).status for s in (0.0, 0.3)]\n"
            "print(json.dumps(out))\n",
        )
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 2)
    lines = sorted(
        (json.loads(line) for line in log.read_text().splitlines()), key=lambda r: r["ran"]
    )
    assert [r["status"] for r in lines] == ["success", "success"]
    assert 0 <= lines[0]["ran"] < 0.25 and 0.29 <= lines[1]["ran"] < 5
    assert all(0 <= r["waited"] < 5 for r in lines)


def test_encryption_leaves_no_plaintext_in_redis(venv: Venv, redis_url: str) -> None:
    import redis

    from qtasks_core.keys import Keys, escape_glob

    name = f"contract-enc-{os.getpid()}"
    key = {"QTASKS_ENCRYPTION_KEY": "correct horse battery staple"}
    with _worker(venv, redis_url, name, **key):
        seen = _producer(
            venv,
            redis_url,
            name,
            "done = app.add_task('secret_echo', 'attack at dawn', n=3, timeout=30)\n"
            "got = app.get(done.uuid)\n"
            "print(json.dumps({'waited': done.returning, 'args': list(got.args),\n"
            "                  'kwargs': got.kwargs, 'got': got.returning}))\n",
            **key,
        )
    # The worker called the task with the real arguments; every read opens them again.
    assert seen == {
        "waited": {"text": "attack at dawn", "n": 3},
        "args": ["attack at dawn"],
        "kwargs": {"n": 3},
        "got": {"text": "attack at dawn", "n": 3},
    }
    client = redis.Redis.from_url(redis_url)
    stored = []
    for k in client.scan_iter(match=escape_glob(Keys.for_app(name).prefix) + "*"):
        kind = client.type(k)
        if kind == b"hash":
            stored.append(repr(client.hgetall(k)))
        elif kind == b"list":
            stored.append(repr(client.lrange(k, 0, -1)))
        elif kind == b"stream":
            stored.append(repr(client.xrange(k)))
        elif kind == b"string":
            stored.append(repr(client.get(k)))
    everything = "\n".join(stored)
    assert "qtasks-enc:" in everything  # the sealed values are there
    assert "attack at dawn" not in everything and "dawn" not in everything
