"""The original's ``tests/apps/app_sync.py`` with the imports changed.

The original built a ``SyncRedisBroker`` and a ``SyncThreadWorker`` for the app; ours
has one kind of each, so the app alone. The tests' fixture points it at the suite's
Redis (the original used localhost). Results arrive without polling here, so the task
takes a moment: ``timeout=0.1`` must run out, as the original's 1 s polling made it.
"""

import time

from qtasks_core import QueueTasks

app = QueueTasks(name="QueueTasks-compat-sync", load_entry_points=False)


@app.task(name="test")
def sample_task(id: int):
    time.sleep(0.3)  # see the module docstring
    result = f"Пользователь {id} записан"
    return result


@app.task(name="error_task")
def error_zero():
    result = 1 / 0
    return result
