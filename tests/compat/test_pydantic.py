"""Pydantic-model parameters as the original QTasks documents them: positional,
mixed and keyword forms all build the same model."""

from __future__ import annotations

import pydantic

from qtasks_core import QueueTasks


class Item(pydantic.BaseModel):
    name: str
    value: int


def test_positional_mixed_and_keyword_forms_build_the_same_model(app: QueueTasks) -> None:
    @app.task(description="Test task using Pydantic.", tags=["example"])
    async def example_pydantic(item: Item) -> str:
        assert item == Item(name="Test", value=42)
        return f"Hello, {item.name}!"

    @app.task
    async def task_with_mix(item: Item, retries: int = 3) -> list[object]:
        return [item.model_dump(), retries]

    with app.running_worker():
        forms = [
            example_pydantic.add_task("Test", value=42, timeout=50),
            example_pydantic.add_task("Test", 42, timeout=50),
            example_pydantic.add_task(name="Test", value=42, timeout=50),
        ]
        mixed = task_with_mix.add_task("Test", 42, 5, timeout=50)
        default = task_with_mix.add_task("Test", 42, timeout=50)
        wrong = example_pydantic.add_task("Test", "forty-two", timeout=50)
    assert [(t.status, t.returning) for t in forms] == [("success", "Hello, Test!")] * 3
    # What is left after the model's fields goes to the parameters after it.
    assert mixed.returning == [{"name": "Test", "value": 42}, 5]
    assert default.returning == [{"name": "Test", "value": 42}, 3]
    assert wrong.status == "error" and "validation error for Item" in (wrong.traceback or "")
