"""The built-in plugins (pydantic arguments, Depends, State) as users rely on them."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import BaseModel
from typing_extensions import TypedDict

from qtasks_core import Depends, QueueTasks, State


class User(BaseModel):
    name: str
    age: int


def test_a_model_parameter_receives_a_validated_instance(app: QueueTasks) -> None:
    @app.task
    def describe(user: User, greeting: str = "hi") -> str:
        assert isinstance(user, User)
        return f"{greeting} {user.name} ({user.age})"

    with app.running_worker():
        from_dict = app.add_task("describe", user={"name": "Ada", "age": "36"}, timeout=10)
        from_fields = app.add_task("describe", name="Grace", age=85, timeout=10)
        positional = app.add_task("describe", {"name": "Linus", "age": 54}, "hello", timeout=10)
    assert from_dict.returning == "hi Ada (36)"
    assert from_fields.returning == "hi Grace (85)"
    assert positional.returning == "hello Linus (54)"


def test_invalid_model_input_ends_error_with_pydantics_message(app: QueueTasks) -> None:
    @app.task
    def describe(user: User) -> str:
        return user.name

    with app.running_worker():
        task = app.add_task("describe", user={"name": "Ada", "age": "old"}, timeout=10)
    assert task.status == "error"
    assert "validation error for User" in (task.traceback or "")
    assert "age" in (task.traceback or "")


def test_a_returned_model_is_stored_as_its_json(app: QueueTasks) -> None:
    @app.task
    async def make() -> User:
        return User(name="Ada", age=36)

    with app.running_worker():
        assert app.add_task("make", timeout=10).returning == {"name": "Ada", "age": 36}


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Window(TypedDict):
    width: int


def test_arguments_arrive_as_the_types_the_function_declares(app: QueueTasks) -> None:
    """JSON carries strings and dicts; the worker converts them by the annotations."""
    ident = uuid.uuid4()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def kinds(
        when: datetime.datetime,
        amount: decimal.Decimal,
        ident: uuid.UUID,
        color: Color,
        point: Point,
        window: Window,
        *rest: Any,
        scale: float = 1.0,
    ) -> list[Any]:
        assert isinstance(when, datetime.datetime) and isinstance(amount, decimal.Decimal)
        assert isinstance(ident, uuid.UUID) and isinstance(point, Point)
        return [color.name, point.x + point.y, window, list(rest), scale]

    @app.task
    def plain(a, b):  # type: ignore[no-untyped-def]
        return a + b

    with app.running_worker():
        assert app.add_task("add", "2", "3", timeout=10).returning == 5
        converted = app.add_task(
            "kinds",
            datetime.datetime(2026, 12, 7, 9, 30),
            decimal.Decimal("1.10"),
            ident,
            "red",
            {"x": 1, "y": "2"},
            {"width": 3},
            "extra",
            scale="2.5",
            timeout=10,
        )
        # No annotation, no conversion: what was sent arrives.
        assert app.add_task("plain", "2", "3", timeout=10).returning == "23"
    assert converted.status == "success", converted.traceback
    assert converted.returning == ["RED", 3, {"width": 3}, ["extra"], 2.5]


def test_an_argument_its_annotation_refuses_ends_the_task_error_naming_it(
    app: QueueTasks,
) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with app.running_worker():
        task = app.add_task("add", 1, b="three", timeout=10)
    assert task.status == "error"
    assert "add_args\nb\n  Input should be a valid integer" in (task.traceback or "")


def test_the_pydantic_plugin_can_be_switched_off(redis_url: str) -> None:
    app = QueueTasks(
        "no-pydantic",
        redis_url="memory://",
        load_entry_points=False,
        block_plugins=["qtasks.pydantic"],
    )

    @app.task
    def kind(user: User) -> str:
        return type(user).__name__

    with app.running_worker():
        assert app.add_task("kind", user={"name": "A", "age": 1}, timeout=10).returning == "dict"
    assert "qtasks.pydantic" not in [i.name for i in app.pm.plugin_infos()]
    app.stop()


def test_depends_task_scope_closes_on_every_path_and_never_across_tasks(
    app: QueueTasks,
) -> None:
    events: list[str] = []
    counter = iter(range(1000))

    async def resource() -> AsyncIterator[str]:
        name = f"r{next(counter)}"
        events.append(f"open {name}")
        try:
            yield name
        finally:
            events.append(f"close {name}")

    @app.task
    async def use(hold: float, fail: bool = False, res: str = Depends(resource)) -> str:
        events.append(f"use {res}")
        await asyncio.sleep(hold)
        # The resource is still open while its task runs, whatever other tasks do.
        assert f"close {res}" not in events
        if fail:
            raise RuntimeError("task failed")
        return res

    with app.running_worker(concurrency=4):
        long = app.add_task("use", 0.3)
        short = app.add_task("use", 0.01)
        failing = app.add_task("use", 0.01, fail=True)
        results = [app.wait(t.uuid, 10) for t in (long, short, failing)]
    assert results[0].status == results[1].status == "success"
    assert results[2].status == "error"
    opened = [e.split()[1] for e in events if e.startswith("open")]
    closed = [e.split()[1] for e in events if e.startswith("close")]
    assert sorted(opened) == sorted(closed) and len(opened) == 3  # each closed exactly once


def test_depends_worker_scope_is_made_once_and_closed_at_worker_stop(app: QueueTasks) -> None:
    events: list[str] = []

    def pool() -> Iterator[dict[str, Any]]:
        events.append("open")
        yield {"pool": True}
        events.append("close")

    @app.task
    def query(n: int, db: dict[str, Any] = Depends(pool, scope="worker")) -> int:
        assert db == {"pool": True}
        return n

    with app.running_worker(concurrency=3):
        tasks = [app.add_task("query", i) for i in range(6)]
        assert [app.wait(t.uuid, 10).returning for t in tasks] == list(range(6))
        assert events == ["open"]
    assert events == ["open", "close"]


def test_depends_accepts_coroutines_and_context_managers(app: QueueTasks) -> None:
    class Session:
        closed = False

        async def __aenter__(self) -> Session:
            return self

        async def __aexit__(self, *exc: object) -> None:
            Session.closed = True

    async def settings() -> dict[str, int]:
        return {"limit": 3}

    @app.task
    async def job(
        cfg: dict[str, int] = Depends(settings), session: Session = Depends(Session)
    ) -> int:
        assert isinstance(session, Session)
        return cfg["limit"]

    with app.running_worker():
        assert app.add_task("job", timeout=10).returning == 3
    assert Session.closed


class Hits(State):
    """Module level, as user code has it: annotations are resolved in the module."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0


def test_state_is_one_object_per_worker_shared_by_tasks(app: QueueTasks) -> None:
    @app.task
    async def hit(state: Hits) -> int:
        async with state.lock:
            state.count += 1
            return state.count

    @app.task
    def sync_hit(state: Hits) -> int:
        with state.thread_lock:
            state.count += 1
            return state.count

    with app.running_worker(concurrency=4):
        tasks = [app.add_task("hit") for _ in range(5)] + [app.add_task("sync_hit")]
        results = sorted(app.wait(t.uuid, 10).returning for t in tasks)
    assert results == [1, 2, 3, 4, 5, 6]
