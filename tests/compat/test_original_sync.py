"""The original QTasks' ``tests/sync/test_sync_task.py``, with the import lines changed,
and the documented difference: a wait that runs out raises ``TaskTimeoutError`` (which
keeps the task's id) where the original returned ``None``.

``test_case`` is the original's: ``SyncTestCase(app=app)`` with ``TestConfig.full()``.
"""

from uuid import uuid4

import pytest

from qtasks_core import TaskStatusEnum
from qtasks_core.errors import TaskTimeoutError
from qtasks_core.testcase import SyncTestCase, TestConfig
from tests.compat.apps.app_sync import app

pytestmark = pytest.mark.usefixtures("original_sync_app")


@pytest.fixture()
def test_case():
    """Создаёт конфигурацию тестов."""
    case = SyncTestCase(app=app)
    case.settings(TestConfig.full())
    return case


def test_task_get_result(test_case):
    """Получение результата задачи."""
    task = test_case.add_task("test", 5)
    result = app.get(uuid=task.uuid)
    assert result is not None


def test_task_get_wait(test_case):
    """Ожидание завершения задачи."""
    result = test_case.add_task("test", 5, timeout=500)
    assert result.status == TaskStatusEnum.SUCCESS.value


def test_task_error_get_wait(test_case):
    """Ожидание завершения задачи с ошибкой."""  # noqa: RUF002 (the original's own text)
    result = test_case.add_task("error_task", timeout=500)
    assert result.status == TaskStatusEnum.ERROR.value


def test_task_returns_expected_result(test_case):
    """Проверка ожидаемого результата задачи."""
    result = test_case.add_task("test", 5, timeout=500)
    assert result.returning == "Пользователь 5 записан"


def test_task_not_found():
    """Проверка отсутствия задачи."""
    fake_uuid = str(uuid4())
    result = app.get(uuid=fake_uuid)
    assert result is None


def test_task_timeout(test_case):
    """Проверка истечения времени ожидания задачи."""
    # The documented difference: the original returned None, ours keeps the id.
    with pytest.raises(TaskTimeoutError) as result:
        test_case.add_task("test", 5, timeout=0.1)
    assert app.get(uuid=result.value.uuid) is not None
