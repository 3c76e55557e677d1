"""A Django project using QTasks: tasks found in its apps, the app configured in its
settings, and tasks enqueued only when the transaction that adds them commits.

The project (one app, ``qtshop``, with a model and a ``tasks.py``; SQLite) is written
by the test and configured in this process; a worker runs on the in-memory backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.apps import apps  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

from qtasks_core import Task, TaskOptionError, TaskSerializationError, hookimpl  # noqa: E402
from qtasks_core.contrib.django import (  # noqa: E402
    add_task_on_commit,
    autodiscover_tasks,
    build_app,
    get_app,
    send_task_on_commit,
)

SHOP = {
    "__init__.py": "",
    "apps.py": """
        from django.apps import AppConfig

        class ShopConfig(AppConfig):
            name = "qtshop"
            default_auto_field = "django.db.models.AutoField"
    """,
    "models.py": """
        from django.db import models

        class Order(models.Model):
            item = models.CharField(max_length=50)
            shipped = models.BooleanField(default=False)
    """,
    "tasks.py": """
        from qtasks_core.contrib.django import app

        from .models import Order


        @app.task
        def ship(order_id):
            order = Order.objects.get(pk=order_id)  # fails if the row is not committed
            order.shipped = True
            order.save()
            return order.item
    """,
    "broken.py": """
        import a_module_that_is_not_installed
    """,
}

#: The settings module of the worker processes (the test process configures its own).
SETTINGS = """
import os

INSTALLED_APPS = ["qtasks_core.contrib.django", "qtshop.apps.ShopConfig"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
USE_TZ = True
QTASKS = {{"name": "shop", "redis_url": os.environ["SHOP_REDIS_URL"], "load_entry_points": False}}
"""


class Enqueued:
    """A plugin that records every task written to the broker."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    @hookimpl
    def qtasks_add_task_after_broker(self, task: Task) -> None:
        self.tasks.append(task)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert not settings.configured, "another test configured Django settings first"
    root = tmp_path_factory.mktemp("djangoproject")
    (root / "qtshop").mkdir()
    for name, text in SHOP.items():
        (root / "qtshop" / name).write_text(textwrap.dedent(text))
    (root / "shop_settings.py").write_text(SETTINGS.format(db=str(root / "db.sqlite3")))
    sys.path.insert(0, str(root))
    settings.configure(
        INSTALLED_APPS=["qtasks_core.contrib.django", "qtshop.apps.ShopConfig"],
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": root / "db.sqlite3"}
        },
        USE_TZ=True,
        QTASKS={
            "name": "shop",
            "redis_url": "memory://",
            "load_entry_points": False,
            "task_default_priority": 3,
        },
    )
    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    yield root
    get_app().stop()
    sys.path.remove(str(root))


@pytest.fixture
def enqueued(project: Path) -> Iterator[Enqueued]:
    recorder = Enqueued()
    app = get_app()
    app.add_plugin(recorder)
    yield recorder
    app.pm.unregister(recorder)


@pytest.fixture
def worker(project: Path) -> Iterator[Any]:
    with get_app().running_worker(concurrency=2) as running:
        yield running


def order(item: str) -> Any:
    return apps.get_model("qtshop", "Order").objects.create(item=item)


def test_the_app_comes_from_settings_with_the_tasks_of_installed_apps(project: Path) -> None:
    app = get_app()

    assert app.name == "shop"
    assert app.config.task_default_priority == 3
    # Found through "qtshop.apps.ShopConfig", an entry the original could not import.
    assert "ship" in app.tasks
    assert get_app() is app


def test_a_task_added_in_a_transaction_is_enqueued_at_commit(
    enqueued: Enqueued, worker: Any
) -> None:
    with transaction.atomic():
        placed = order("lamp")
        add_task_on_commit("ship", placed.pk)
        assert enqueued.tasks == []  # not before the commit

    [task] = enqueued.tasks
    assert task.priority == 3
    done = get_app().wait(task.uuid, 10)
    assert (done.status, done.returning) == ("success", "lamp")
    placed.refresh_from_db()
    assert placed.shipped


def test_a_task_added_in_a_transaction_that_rolls_back_is_never_enqueued(
    enqueued: Enqueued, worker: Any
) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        order("chair")
        add_task_on_commit("ship", 10_000)
        raise RuntimeError("payment refused")

    # The inner block is a savepoint: its tasks wait for the outer block's commit.
    with transaction.atomic(), transaction.atomic():
        placed = order("desk")
        send_task_on_commit("ship", [placed.pk], priority=1)
        assert enqueued.tasks == []

    [task] = enqueued.tasks
    assert list(task.args) == [placed.pk] and task.priority == 1
    assert get_app().wait(task.uuid, 10).returning == "desk"


def test_outside_a_transaction_the_task_is_enqueued_at_once(
    enqueued: Enqueued, worker: Any
) -> None:
    placed = order("rug")

    add_task_on_commit("ship", placed.pk)

    [task] = enqueued.tasks
    assert get_app().wait(task.uuid, 10).returning == "rug"


def test_bad_arguments_are_refused_at_the_call(enqueued: Enqueued) -> None:
    refused = pytest.raises(TaskSerializationError, match="argument 0 of task 'ship'")
    with refused, transaction.atomic():
        add_task_on_commit("ship", object())
    with pytest.raises(TaskOptionError, match="queue"):
        send_task_on_commit("ship", [1], queue="")
    assert enqueued.tasks == []


def test_an_error_in_a_task_module_is_raised_and_missing_modules_are_skipped(
    project: Path,
) -> None:
    app = get_app()

    assert autodiscover_tasks(app, ["tasks", "no_such_module"]) == ["qtshop.tasks"]
    with pytest.raises(ModuleNotFoundError, match="a_module_that_is_not_installed"):
        autodiscover_tasks(app, ["broken"])


def test_a_misspelled_setting_is_named(project: Path) -> None:
    with pytest.raises(TaskOptionError, match="'redis_ulr' \\(did you mean 'redis_url'\\?\\)"):
        build_app({"redis_ulr": "redis://localhost"})


def test_a_worker_process_started_on_the_settings_runs_the_tasks(
    project: Path, redis_url: str
) -> None:
    producer = build_app({"name": "shop", "redis_url": redis_url, "load_entry_points": False})
    recorder = Enqueued()
    producer.add_plugin(recorder)
    with transaction.atomic():
        placed = order("vase")
        send_task_on_commit("ship", [placed.pk], app=producer)

    command = ["worker", "--burst", "-A", "qtasks_core.contrib.django:app"]
    worker = subprocess.run(
        [sys.executable, "-m", "qtasks_core", *command],
        cwd=project,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "shop_settings", "SHOP_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert worker.returncode == 0, worker.stderr
    [task] = recorder.tasks
    assert producer.wait(task.uuid, 10).returning == "vase"
    placed.refresh_from_db()
    assert placed.shipped
    producer.stop()
