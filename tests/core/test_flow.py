"""The task flow a user relies on, on real Redis and on the in-memory backend."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest

from qtasks_core import (
    QueueTasks,
    Router,
    Stats,
    Task,
    TaskContext,
    TaskOptionError,
    TaskSerializationError,
    TaskTimeoutError,
    hookimpl,
    shared_task,
)
from tests.support import wait_for


def test_get_right_after_add_task_finds_it(app: QueueTasks) -> None:
    @app.task
    def noop() -> None:
        return None

    task = app.add_task("noop")
    found = app.get(task.uuid)
    assert found is not None
    assert found.status == "new"
    assert found.task_name == "noop"


def test_waited_task_ends_success_with_its_result(app: QueueTasks) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with app.running_worker():
        task = app.add_task("add", 2, b=3, timeout=10)
    assert task.status == "success"
    assert task.returning == 5
    assert task.args == (2,)
    assert task.kwargs == {"b": 3}


def test_raising_task_ends_error_with_its_traceback(app: QueueTasks) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("exploded on purpose")

    with app.running_worker():
        task = app.add_task("boom", timeout=10)
    assert task.status == "error"
    assert task.traceback is not None
    assert "ValueError: exploded on purpose" in task.traceback


def test_non_ascii_result_round_trips(app: QueueTasks) -> None:
    @app.task
    def greet(name: str) -> str:
        return f"Привет, {name} — 你好 ✓"

    with app.running_worker():
        task = app.add_task("greet", "Zoë", timeout=10)
    assert task.returning == "Привет, Zoë — 你好 ✓"


def test_get_of_unknown_uuid_is_none(app: QueueTasks) -> None:
    assert app.get("00000000-0000-0000-0000-000000000000") is None


def test_a_wait_that_times_out_says_so_and_keeps_the_id(app: QueueTasks) -> None:
    @app.task
    def later() -> str:
        return "done"

    # No worker runs: the wait must run out, and the task must still be there.
    with pytest.raises(TaskTimeoutError) as info:
        app.add_task("later", timeout=0.2)
    uuid = info.value.uuid
    assert info.value.task is not None and info.value.task.status == "new"
    with app.running_worker():
        assert app.wait(uuid, timeout=10).returning == "done"


def test_a_wait_on_a_task_no_worker_serves_says_so(app: QueueTasks) -> None:
    @app.task
    def later() -> str:
        return "done"

    # A worker runs, but on another queue: nothing will ever take the task.
    with app.running_worker(queues=["reports"]):
        wait_for(lambda: Stats(app).inspect().workers, what="the worker's heartbeat")
        with pytest.raises(TaskTimeoutError) as info:
            app.add_task("later", timeout=0.2)
        assert info.value.no_worker == "default"
        assert "no live worker serves its queue 'default'" in str(info.value)
        assert app.backend.location in str(info.value)

        # A task of the queue it serves, not due yet, is only waiting: no such hint.
        with pytest.raises(TaskTimeoutError) as info:
            app.send_task("later", queue="reports", delay=60, timeout=0.2)
        assert info.value.no_worker is None
        assert "no live worker" not in str(info.value)


def test_unknown_task_name_ends_error_with_a_clear_message(app: QueueTasks) -> None:
    @app.task
    def known() -> None:
        return None

    with app.running_worker():
        task = app.add_task("unknown_task", timeout=10)
    assert task.status == "error"
    assert "no task named 'unknown_task' is registered" in (task.traceback or "")
    assert "known" in (task.traceback or "")


def test_unserializable_arguments_are_refused_and_nothing_is_written(app: QueueTasks) -> None:
    @app.task
    def takes(x: Any) -> None:
        return None

    with pytest.raises(TaskSerializationError, match=r"argument 'x' of task 'takes'.*lock"):
        app.add_task("takes", x=threading.Lock())
    assert Stats(app).inspect().status_counts.get("new", 0) == 0


def test_an_oversized_payload_is_refused() -> None:
    app = QueueTasks("payload", redis_url="memory://", load_entry_points=False, max_payload=100)
    with pytest.raises(TaskOptionError, match="over max_payload=100"):
        app.add_task("anything", "x" * 200)
    app.stop()


def test_priority_out_of_range_is_refused(app: QueueTasks) -> None:
    with pytest.raises(TaskOptionError, match="priority must be an int"):
        app.add_task("x", priority=10_000)


def test_lower_priority_runs_first_fifo_within_one(app: QueueTasks) -> None:
    order: list[str] = []

    @app.task
    def record(tag: str) -> None:
        order.append(tag)

    tasks = [
        app.add_task("record", "p5-a", priority=5),
        app.add_task("record", "p1-a", priority=1),
        app.add_task("record", "p5-b", priority=5),
        app.add_task("record", "p-2", priority=-2),
        app.add_task("record", "p1-b", priority=1),
    ]
    with app.running_worker(concurrency=1):
        for task in tasks:
            app.wait(task.uuid, timeout=10)
    assert order == ["p-2", "p1-a", "p1-b", "p5-a", "p5-b"]


def test_task_kwargs_named_priority_and_timeout_via_send_task(app: QueueTasks) -> None:
    @app.task
    def echo(priority: int, timeout: float) -> list[float]:
        return [priority, timeout]

    with app.running_worker():
        task = app.send_task("echo", kwargs={"priority": 7, "timeout": 1.5}, timeout=10)
    assert task.returning == [7, 1.5]


def test_decorated_function_stays_callable_and_enqueues(app: QueueTasks) -> None:
    @app.task(priority=3, tags=["math"], description="adds")
    def add(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3
    with app.running_worker():
        task = add.add_task(4, 5, timeout=10)
    assert task.returning == 9
    assert task.priority == 3


def test_async_api_from_the_callers_own_loop(app: QueueTasks) -> None:
    @app.task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    async def main() -> list[Any]:
        worker = app.worker(concurrency=4)
        running = asyncio.create_task(worker.run())
        try:
            tasks = [await app.add_task_async("double", i) for i in range(5)]
            return [(await app.wait_async(t.uuid, 10)).returning for t in tasks]
        finally:
            worker.stop()
            await running
            await app.stop_async()

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]


def test_sync_tasks_run_in_threads_not_on_the_loop(app: QueueTasks) -> None:
    @app.task
    def where() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return True
        return False

    with app.running_worker():
        assert app.add_task("where", timeout=10).returning is True


def test_max_time_is_enforced_for_async_and_sync(app: QueueTasks) -> None:
    @app.task(max_time=0.2)
    async def slow_async() -> None:
        await asyncio.sleep(5)

    @app.task(max_time=0.2)
    def slow_sync() -> None:
        time.sleep(1)

    with app.running_worker():
        started = time.monotonic()
        a = app.add_task("slow_async", timeout=10)
        s = app.add_task("slow_sync", timeout=10)
        elapsed = time.monotonic() - started
    assert a.status == "error" and "exceeded max_time=0.2s" in (a.traceback or "")
    assert s.status == "error" and "exceeded max_time=0.2s" in (s.traceback or "")
    assert elapsed < 1.0


def test_generators_with_generate_handler_return_handled_values(app: QueueTasks) -> None:
    @app.task(generate_handler=lambda value: value * 10)
    def sync_gen(n: int) -> Any:
        yield from range(n)

    async def handler(value: int) -> int:
        return value + 1

    @app.task(generate_handler=handler)
    async def async_gen(n: int) -> Any:
        for i in range(n):
            yield i

    with app.running_worker():
        assert app.add_task("sync_gen", 3, timeout=10).returning == [0, 10, 20]
        assert app.add_task("async_gen", 3, timeout=10).returning == [1, 2, 3]


def test_ctx_cancel_ends_the_task_cancel_with_its_reason(app: QueueTasks) -> None:
    @app.task(echo=True)
    def give_up(ctx: TaskContext) -> None:
        ctx.cancel("not today")

    with app.running_worker():
        task = app.add_task("give_up", timeout=10)
    assert task.status == "cancel"
    assert task.cancel_reason == "not today"


def test_ctx_gives_the_task_its_identity_config_and_other_tasks(app: QueueTasks) -> None:
    @app.task
    def first() -> str:
        return "one"

    @app.task(echo=True, tags=["t"])
    async def inspect_me(ctx: TaskContext, other: str) -> dict[str, Any]:
        other_task = await ctx.get_task(other)
        await ctx.sleep(0)
        ctx.get_logger().info("running")
        return {
            "name": ctx.task_name,
            "uuid": ctx.task_uuid,
            "config": await ctx.get_config("greeting"),
            "tags": list(ctx.tags),
            "other": other_task.returning,
        }

    @app.task(echo=True)
    def sync_ctx(ctx: TaskContext, other: str) -> Any:
        return [ctx.get_config("greeting"), ctx.get_task(other).returning]

    async def set_config() -> None:
        await app.global_config.set("main", "greeting", "hello")

    app._portal.call(set_config())
    with app.running_worker():
        one = app.add_task("first", timeout=10)
        task = app.add_task("inspect_me", one.uuid, timeout=10)
        sync = app.add_task("sync_ctx", one.uuid, timeout=10)
    assert task.returning == {
        "name": "inspect_me",
        "uuid": task.uuid,
        "config": "hello",
        "tags": ["t"],
        "other": "one",
    }
    assert sync.returning == ["hello", "one"]


def test_ctx_plugin_error_goes_through_the_trigger_error_trigger(app: QueueTasks) -> None:
    @app.task(echo=True)
    def needs_plugin(ctx: TaskContext) -> None:
        ctx.plugin_error("handled elsewhere", code=42)

    class Handler:
        @hookimpl
        def task_executor_run_task_trigger_error(self, e: Any) -> Any:
            return {"handled": e.extra["code"]}

    with app.running_worker():
        unhandled = app.add_task("needs_plugin", timeout=10)
        app.add_plugin(Handler(), name="handler")
        handled = app.add_task("needs_plugin", timeout=10)
    assert unhandled.status == "error"
    assert "TaskPluginTriggerError: handled elsewhere" in (unhandled.traceback or "")
    assert handled.status == "success" and handled.returning == {"handled": 42}


def test_retries_with_backoff_end_in_error_after_n_plus_one_attempts(app: QueueTasks) -> None:
    attempts: list[float] = []

    @app.task(retry=2, retry_backoff=0.05, retry_jitter=False)
    def flaky() -> None:
        attempts.append(time.monotonic())
        raise ConnectionError("still down")

    with app.running_worker():
        task = app.add_task("flaky", timeout=20)
    assert task.status == "error"
    assert len(attempts) == 3
    assert task.attempts == 3
    # Backoff doubles: >= 0.05 s, then >= 0.1 s.
    assert attempts[1] - attempts[0] >= 0.04
    assert attempts[2] - attempts[1] >= 0.09


def test_retry_delays_are_jittered_between_half_and_all_of_the_backoff() -> None:
    """Tasks that failed together come back spread out, each after at least half its
    backoff; retry_jitter=False keeps the exact doubling."""
    from qtasks_core.plugins.retry import RetryPlugin
    from qtasks_core.schemas import TaskExecSchema, TaskPrioritySchema, TaskStatusErrorSchema

    def delays(jitter: bool, done: int) -> list[float]:
        spec = TaskExecSchema(
            name="t", func=lambda: None, retry=5, retry_backoff=2.0, retry_jitter=jitter
        )
        queued = TaskPrioritySchema(
            uuid="u", task_name="t", priority=0, created_at=0.0, retry=5 - done
        )
        error = TaskStatusErrorSchema(uuid="u", traceback="")
        out = []
        for _ in range(200):
            model = RetryPlugin().worker_task_error_retry(spec, queued, OSError(), error, True)
            assert model is not None and model.status == "retry"
            out.append(model.retry_delay)
        return out

    third = delays(True, 2)  # the third retry: a backoff of 2 * 2**2 = 8 s
    assert all(4.0 <= d <= 8.0 for d in third)
    assert len(set(third)) > 100 and min(third) < 5.0 and max(third) > 7.0
    assert set(delays(False, 2)) == {8.0}


def test_retry_on_exc_retries_only_matching_exceptions(app: QueueTasks) -> None:
    calls: list[str] = []

    @app.task(retry=3, retry_on_exc=[KeyError], retry_backoff=0.01)
    def picky(kind: str) -> None:
        calls.append(kind)
        raise KeyError(kind) if kind == "key" else ValueError(kind)

    with app.running_worker():
        app.add_task("picky", "value", timeout=10)
        app.add_task("picky", "key", timeout=20)
    assert calls.count("value") == 1
    assert calls.count("key") == 4


def test_a_retried_task_that_succeeds_is_success_under_the_same_id(app: QueueTasks) -> None:
    seen: list[int] = []

    @app.task(retry=3, retry_backoff=0.01)
    def second_time_lucky() -> str:
        seen.append(1)
        if len(seen) < 2:
            raise RuntimeError("first try fails")
        return "ok"

    with app.running_worker():
        task = app.add_task("second_time_lucky", timeout=10)
    assert task.status == "success" and task.returning == "ok" and task.attempts == 2


def test_a_plugin_that_raises_fails_that_task_naming_the_plugin(app: QueueTasks) -> None:
    class Faulty:
        @hookimpl
        def task_executor_args_replace(self, args: list[Any]) -> Any:
            if args and args[0] == "bad":
                raise RuntimeError("plugin broke")
            return None

    app.add_plugin(Faulty(), name="faulty-plugin")

    @app.task
    def work(x: str) -> str:
        return x

    with app.running_worker():
        bad = app.add_task("work", "bad", timeout=10)
        good = app.add_task("work", "good", timeout=10)
    assert bad.status == "error"
    assert "raised by plugin 'faulty-plugin' in trigger 'task_executor_args_replace'" in (
        bad.traceback or ""
    )
    assert good.status == "success"


def test_cancel_a_queued_task(app: QueueTasks) -> None:
    ran: list[int] = []

    @app.task
    def never() -> None:
        ran.append(1)

    task = app.add_task("never")
    assert app.cancel(task.uuid, "changed my mind") is True
    with app.running_worker():
        final = app.wait(task.uuid, timeout=5)
        app.add_task("never", timeout=10)  # proves the worker ran meanwhile
    assert final.status == "cancel" and final.cancel_reason == "changed my mind"
    assert ran == [1]


def test_routers_and_shared_tasks(app: QueueTasks) -> None:
    router = Router()

    @router.task(name="routed")
    def routed_task() -> str:
        return "from router"

    @shared_task
    def shared_everywhere() -> str:
        return "shared"

    app.include_router(router)
    with app.running_worker():
        assert routed_task.add_task(timeout=10).returning == "from router"
        assert app.add_task("shared_everywhere", timeout=10).returning == "shared"


def test_ping_flush_all_and_stats(app: QueueTasks) -> None:
    @app.task
    def noop() -> None:
        return None

    assert app.ping() is True
    app.add_task("noop", priority=2)
    app.add_task("noop", priority=2)
    app.add_task("noop", priority=0)
    stats = Stats(app).inspect()
    assert stats.queued == {2: 2, 0: 1}
    assert stats.status_counts["new"] == 3
    assert "noop" in [t["name"] for t in stats.tasks]
    with app.running_worker() as worker:
        app.add_task("noop", timeout=10)
        deadline = time.monotonic() + 10
        while not Stats(app).inspect().workers and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = Stats(app).inspect()
        assert [w.id for w in stats.workers] == [worker.id]
    assert stats.status_counts["success"] == 4
    app.flush_all()
    assert app.get(app.add_task("noop").uuid) is not None
    app.flush_all()
    assert Stats(app).inspect().queued == {}


def test_cancelling_serve_stops_the_worker_gracefully(app: QueueTasks) -> None:
    @app.task
    async def slow() -> str:
        await asyncio.sleep(0.3)
        return "finished"

    async def main() -> tuple[str, str]:
        serving = asyncio.create_task(app.serve(concurrency=2, grace=5))
        task = await app.add_task_async("slow")
        while (await app.get_async(task.uuid)).status != "process":  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        final = await app.get_async(task.uuid)
        await app.stop_async()
        assert final is not None
        return final.status, final.returning

    # The running task finished within the grace period before serve() returned.
    assert asyncio.run(main()) == ("success", "finished")


def test_add_tasks_enqueues_a_batch_in_order(app: QueueTasks) -> None:
    @app.task
    def square(n: int) -> int:
        return n * n

    tasks = app.add_tasks([("square", (i,)) for i in range(50)] + [("square", (), {"n": 50})])
    assert [t.args for t in tasks[:3]] == [(0,), (1,), (2,)] and tasks[-1].kwargs == {"n": 50}
    with app.running_worker(concurrency=8):
        results = [app.wait(t.uuid, 10).returning for t in tasks]
    assert results == [n * n for n in range(51)]


def test_add_tasks_refuses_the_batch_item_that_cannot_be_serialized(app: QueueTasks) -> None:
    with pytest.raises(TaskSerializationError, match="argument 0 of task 'x'"):
        app.add_tasks([("x", (1,)), ("x", (object(),))])


def test_add_tasks_keeps_the_chunks_before_an_error_and_writes_none_after(
    app: QueueTasks,
) -> None:
    # Chunks are 1,000 tasks: the bad arguments are in the third chunk.
    calls: list[tuple[str, tuple[Any, ...]]] = [("x", (i,)) for i in range(2_500)]
    calls[2_100] = ("x", (object(),))
    with pytest.raises(TaskSerializationError, match="argument 0 of task 'x'"):
        app.add_tasks(calls)
    assert Stats(app).inspect().queued == {0: 2_000}

    class FailsOnTheSecondChunk:
        @hookimpl
        def qtasks_add_task_before_broker(self, args: tuple[Any, ...]) -> None:
            # Raised while the first chunk's write is in flight.
            if args == (1_500,):
                raise RuntimeError("refused")

    app.add_plugin(FailsOnTheSecondChunk(), name="fails")
    with pytest.raises(RuntimeError, match="refused"):
        app.add_tasks([("x", (i,)) for i in range(3_000)])
    assert Stats(app).inspect().queued == {0: 3_000}


def test_concurrent_enqueues_each_write_their_own_task(app: QueueTasks) -> None:
    @app.task
    def echo(n: int) -> int:
        return n

    async def enqueue() -> list[Task]:
        # Concurrent calls share script calls (coalesced); each still gets its task.
        return list(await asyncio.gather(*(app.add_task_async("echo", n) for n in range(300))))

    tasks = app._portal.call(enqueue())
    assert len({t.uuid for t in tasks}) == 300
    assert Stats(app).inspect().queued == {0: 300}
    with app.running_worker(concurrency=16):
        assert [app.wait(t.uuid, 20).returning for t in tasks] == list(range(300))


def test_the_wake_up_list_stays_bounded_without_workers(
    redis_app: QueueTasks, redis_url: str
) -> None:
    import redis

    from qtasks_core.keys import Keys

    for n in range(1_100):
        redis_app.add_task("x", n)
    redis_app.add_tasks([("x", (n,)) for n in range(1_100)])
    client = redis.Redis.from_url(redis_url)
    assert client.llen(Keys.for_app(redis_app.name).wake) <= 1_000


def test_a_task_tells_how_long_it_waited_and_ran(app: QueueTasks) -> None:
    @app.task(name="nap")
    async def nap() -> None:
        await asyncio.sleep(0.05)

    task = app.add_task("nap")
    time.sleep(0.03)  # queued a while before any worker takes it
    with app.running_worker():
        done = app.wait(task.uuid, timeout=10)
    assert done.enqueued_at and done.started_at and done.finished_at
    assert (done.started_at - done.enqueued_at).total_seconds() >= 0.02
    assert (done.finished_at - done.started_at).total_seconds() >= 0.04
    assert app.get(task.uuid).finished_at == done.finished_at  # type: ignore[union-attr]


def test_a_handle_sends_with_options_and_keeps_the_originals_form(app: QueueTasks) -> None:
    @app.task(queue="slow")
    def add(a: int, b: int) -> int:
        return a + b

    # with_options: the call's options apart from the task's own arguments.
    waiting = add.with_options(queue="other", delay=60, priority=3).add_task(2, b=3)
    record = app.get(waiting.uuid)
    assert record is not None
    assert (record.queue, record.priority, record.status) == ("other", 3, "new")
    assert record.eta is not None and record.args == (2,) and record.kwargs == {"b": 3}
    with app.running_worker(queues=["slow"]):
        assert add.with_options(timeout=10).add_task(4, 5).returning == 9
        # The original QTasks' form: options beside the arguments.
        assert add.add_task(1, 2, timeout=10, priority=1).returning == 3
    with pytest.raises(TaskOptionError, match="delay must be"):
        add.with_options(delay=-5).add_task(1, 2)


def test_the_asyncio_apps_handle_awaits_and_gives_none_when_its_wait_runs_out() -> None:
    from qtasks_core.asyncio import QueueTasks as AsyncQueueTasks

    app = AsyncQueueTasks(f"handles-{next(_handle_apps)}", redis_url="memory://")

    @app.task
    async def shout(word: str) -> str:
        return word.upper()

    async def main() -> tuple[Task | None, Task | None, Task | None]:
        queued = await shout.add_task("hey", timeout=0.05)  # no worker: the wait runs out
        serving = asyncio.create_task(app.serve(concurrency=1, grace=5))
        done = await shout.add_task("hey", timeout=10)
        done_too = await shout.with_options(timeout=10).add_task("ho")
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        return queued, done, done_too

    try:
        queued, done, done_too = asyncio.run(main())
    finally:
        asyncio.run(app.stop())
    assert queued is None
    assert done is not None and done.returning == "HEY"
    assert done_too is not None and done_too.returning == "HO"


_handle_apps = itertools.count()


def test_a_wait_wakes_at_the_end_of_a_task_sent_without_one(app: QueueTasks) -> None:
    # The engine tells an end only to the waiters of a task marked as waited for: a
    # wait that arrives after the send marks it, so it wakes at the end, not after its
    # block (20 s) runs out; one that arrives after the end reads it at once.
    @app.task
    def nap() -> str:
        time.sleep(0.3)
        return "rested"

    with app.running_worker():
        running = app.add_task("nap")
        started = time.monotonic()
        assert app.wait(running.uuid, timeout=60).returning == "rested"
        assert time.monotonic() - started < 10
        started = time.monotonic()
        assert app.wait(running.uuid, timeout=60).returning == "rested"
        assert time.monotonic() - started < 10


def test_no_done_signal_is_kept_for_a_task_nobody_waits_for(redis_app: QueueTasks) -> None:
    import redis

    @redis_app.task
    def noop() -> None:
        return None

    with redis_app.running_worker():
        quiet = redis_app.add_task("noop")
        waited = redis_app.add_task("noop", timeout=20)
        assert redis_app.wait(quiet.uuid, timeout=20).status == "success"
    client = redis.Redis.from_url(str(redis_app.redis_url))
    keys = redis_app.backend.keys  # type: ignore[attr-defined]
    # The record is kept for the result TTL either way; the done list only where a
    # waiter was told (a copy of the record, as long as it).
    assert client.exists(keys.task(quiet.uuid)) and client.exists(keys.task(waited.uuid))
    assert not client.exists(keys.done(quiet.uuid))
    assert client.exists(keys.done(waited.uuid))
