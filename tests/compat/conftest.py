"""The original QTasks' tests ran a server process with the app (``run_server``);
here a worker of the same app runs beside the tests, on the suite's Redis."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest

from qtasks_core import QueueTasks


def serve(app: QueueTasks, redis_url: str) -> Iterator[None]:
    """Point the original's module-level ``app`` at the suite's server, run a worker."""
    # Before its first use: the app resolves its backend then.
    app.redis_url = redis_url
    with app.running_worker():
        yield
    QueueTasks.flush_all(app)
    QueueTasks.stop(app)


@pytest.fixture(scope="module")
def original_sync_app(redis_url: str) -> Iterator[None]:
    from tests.compat.apps.app_sync import app

    yield from serve(app, redis_url)


@pytest.fixture(scope="module")
def original_async_app(redis_url: str) -> Iterator[None]:
    from tests.compat.apps.app_async import app

    yield from serve(app, redis_url)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "asyncio: run this coroutine test in a fresh event loop (see below)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``@pytest.mark.asyncio`` coroutine tests, as the original's tests are written
    (they used pytest-asyncio), each in a loop of its own: the one thing of
    pytest-asyncio they need is not worth a dependency and its configuration."""
    if pyfuncitem.get_closest_marker("asyncio") is None:
        return None
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        raise pytest.UsageError(f"{pyfuncitem.nodeid}: @pytest.mark.asyncio on a plain function")
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True
