"""State as the original QTasks documents it: ``AsyncState`` subclasses with awaitable
``set/get/update/delete/clear/get_all``, next to our attributes and ``lock``."""

from __future__ import annotations

from typing import Any

from qtasks_core import QueueTasks
from qtasks_core.plugins.state import AsyncState


class MyState(AsyncState):
    """Module level, as the original's docs have it (annotations resolve here)."""

    count = 0


def test_the_originals_two_step_state_example(app: QueueTasks) -> None:
    @app.task
    async def step1(state: MyState) -> str:
        await state.set("state", "await_phone")
        await state.update(step=1, prompt="Enter phone number")
        return "ok"

    @app.task
    async def step2(state: MyState) -> dict[str, Any]:
        seen = await state.get_all()
        if await state.get("state") != "await_phone":
            return {"error": seen}
        await state.update(step=2)
        await state.delete("state")
        after_delete = await state.get()
        missing = await state.get("state", "gone")
        await state.clear()
        # The attributes and the lock are still there, apart from the stored keys.
        async with state.lock:
            state.count += 1
        return {
            "seen": seen,
            "after_delete": after_delete,
            "missing": missing,
            "cleared": await state.get_all(),
            "count": state.count,
        }

    with app.running_worker():
        assert step1.add_task(timeout=10).returning == "ok"
        result = step2.add_task(timeout=10).returning
    assert result == {
        "seen": {"state": "await_phone", "step": 1, "prompt": "Enter phone number"},
        "after_delete": {"step": 2, "prompt": "Enter phone number"},
        "missing": "gone",
        "cleared": {},
        "count": 1,
    }
