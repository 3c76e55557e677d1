"""The original's ``tests/apps/app_async.py`` with the imports changed (see
``app_sync`` for the rest)."""

import asyncio

from qtasks_core.asyncio import QueueTasks

app = QueueTasks(name="QueueTasks-compat-async", load_entry_points=False)


@app.task(name="test")
async def sample_task(id: int):
    await asyncio.sleep(0.3)  # see app_sync's docstring
    result = f"Пользователь {id} записан"
    return result


@app.task(name="error_task")
async def error_zero():
    result = 1 / 0
    return result
