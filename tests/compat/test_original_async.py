"""The original QTasks' ``tests/async/test_async_task.py``, with only the import lines
changed: on :mod:`qtasks_core.asyncio`'s app a wait that runs out returns ``None`` too.

``test_case`` is the original's: ``AsyncTestCase(app=app)`` with ``TestConfig.full()``.
"""

from uuid import uuid4

import pytest

from qtasks_core import TaskStatusEnum
from qtasks_core.testcase import AsyncTestCase, TestConfig
from tests.compat.apps.app_async import app

pytestmark = pytest.mark.usefixtures("original_async_app")


@pytest.fixture()
def test_case():
    """Создаёт конфигурацию тестов."""
    case = AsyncTestCase(app=app)
    case.settings(TestConfig.full())
    return case


@pytest.mark.asyncio
async def test_task_get_result(test_case):
    """Получение результата задачи."""
    task = await test_case.add_task("test", 5)
    result = await app.get(uuid=task.uuid)
    assert result is not None


@pytest.mark.asyncio
async def test_task_get_wait(test_case):
    """Ожидание завершения задачи."""
    result = await test_case.add_task("test", 5, timeout=500)
    assert result.status == TaskStatusEnum.SUCCESS.value


@pytest.mark.asyncio
async def test_task_error_get_wait(test_case):
    """Ожидание завершения задачи с ошибкой."""  # noqa: RUF002 (the original's own text)
    result = await test_case.add_task("error_task", timeout=500)
    assert result.status == TaskStatusEnum.ERROR.value


@pytest.mark.asyncio
async def test_task_returns_expected_result(test_case):
    """Проверка ожидаемого результата задачи."""
    result = await test_case.add_task("test", 5, timeout=500)
    assert result.returning == "Пользователь 5 записан"


@pytest.mark.asyncio
async def test_task_not_found():
    """Проверка отсутствия задачи."""
    fake_uuid = str(uuid4())
    result = await app.get(uuid=fake_uuid)
    assert result is None


@pytest.mark.asyncio
async def test_task_timeout(test_case):
    """Проверка истечения времени ожидания задачи."""
    result = await test_case.add_task("test", 5, timeout=0.1)
    assert result is None
