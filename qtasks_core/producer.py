"""The one path of a new task.

Every way of creating a task goes through :class:`Producer`: ``add_task`` and
``send_task``, ``add_tasks``, a periodic tick, a workflow and each of its steps,
``app.retry``. Each fires the same triggers, in the same order:

1. ``qtasks_add_task_before_broker``: the call's values (name, priority, args, kw,
   extra, and the queue, delay, expiry and unique key it asks for);
2. ``broker_add_before``: the model about to be written;
3. ``storage_add``: its uuid and record;
4. the write: one task, a batch, a tick (with its schedule's cursor), a workflow's start;
   or, for a workflow's later steps, the call that ends the step before;
5. ``broker_add_after``, then ``qtasks_add_task_after_broker``, in the process whose call
   wrote the task (for a workflow's steps, from the status changes that call reports).

A task that passed its before-triggers and was not written fires ``broker_add_failed``
with the reason instead of step 5.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._util import fired
from ._validate import check_priority, check_task_name
from .errors import TaskOptionError
from .keys import DEFAULT_QUEUE
from .schemas import Task, TaskStatusNewSchema
from .storage import TaskExists

if TYPE_CHECKING:
    from .app import BaseQueueTasks

#: A call after ``qtasks_add_task_before_broker``: task_name, priority, args, kw, extra,
#: options (the model's ``queue``, ``delay``, ``expires``, ``unique_key``, ``unique_for``).
Call = tuple[str, int, tuple[Any, ...], dict[str, Any], dict[str, Any], dict[str, Any]]


@dataclass(slots=True)
class Prepared:
    """A task through its before-triggers, ready to write: its uuid, its model and the
    record the backend writes."""

    uuid: str
    model: TaskStatusNewSchema
    record: dict[str, str]


class Producer:
    """Creates tasks for an app: the before-triggers, the write, the after-triggers."""

    def __init__(self, app: BaseQueueTasks) -> None:
        self.app = app

    async def call(
        self,
        task_name: str,
        args: tuple[Any, ...],
        kw: dict[str, Any],
        priority: int | None,
        options: dict[str, Any] | None = None,
    ) -> Call:
        """Step 1: resolve the priority and queue and fire
        ``qtasks_add_task_before_broker``."""
        app = self.app
        broker = app._build()[0]
        spec = app.tasks.get(task_name)
        options = dict(options or {})
        if "queue" not in options and spec is not None and spec.queue != DEFAULT_QUEUE:
            options["queue"] = spec.queue
        if priority is None:
            # A priority given to @app.task wins; else the setting, read now so that a
            # change of app.config applies to the next task.
            if spec is not None and "priority" in spec.model_fields_set:
                priority = spec.priority
            else:
                priority = app._config.task_default_priority
        extra: dict[str, Any] = {}
        new = await fired(
            app.pm.hook.qtasks_add_task_before_broker(
                qtasks=app,
                broker=broker,
                task_name=task_name,
                priority=priority,
                args=args,
                kw=kw,
                extra=extra,
                queue=options.get("queue", DEFAULT_QUEUE),
                delay=options.get("delay"),
                expires=options.get("expires"),
                unique_key=options.get("unique_key"),
            )
        )
        if new:
            # A plugin's replacements meet the rules the caller's values met.
            task_name = check_task_name(new.get("task_name", task_name))
            priority = new.get("priority", priority)
            args = tuple(new.get("args", args))
            kw = dict(new.get("kw", kw))
            extra = dict(new.get("extra", extra))
        # Checked here, after the trigger, also when the caller gave none: the task's
        # own default or a plugin may have set it.
        return task_name, check_priority(priority), args, kw, extra, options

    async def prepare(self, call: Call, uuid: str | None = None) -> Prepared:
        """Steps 2 and 3 for one task (``uuid``: a fixed one, for a tick or a step)."""
        broker, storage, _ = self.app._build()
        model = await broker.before(*call)
        try:
            uuid, model, record = await storage.prepare_add(uuid or str(uuidlib.uuid4()), model)
        except Exception as exc:
            await broker.failed([model], exc)
            raise
        return Prepared(uuid, model, record)

    async def prepare_many(self, calls: list[Call]) -> list[Prepared]:
        """Steps 2 and 3 for a batch, written all or nothing: a task refused there
        fails the batch, and each of its tasks is told as not added."""
        broker, storage, _ = self.app._build()
        models: list[TaskStatusNewSchema] = []
        try:
            for call in calls:
                models.append(await broker.before(*call))
        except Exception as exc:
            # The one that failed was told by broker.before; the others with it.
            await broker.failed(models, exc)
            raise
        try:
            for model in models:
                if model.unique_key is not None:
                    raise TaskOptionError(
                        "unique_key is for one task at a time: send it with send_task, "
                        "not in a batch (add_tasks)"
                    )
            return [
                Prepared(*await storage.prepare_add(str(uuidlib.uuid4()), model))
                for model in models
            ]
        except Exception as exc:
            await broker.failed(models, exc)
            raise

    async def add(self, call: Call, uuid: str | None = None) -> Task:
        """One task through every step (``add_task``, ``send_task``); raises
        :class:`~qtasks_core.storage.UniqueHeld` when another task holds its
        unique key (told to ``broker_add_failed``, nothing written). ``uuid``: a fixed
        one (``retry(once=True)``); a record of it raises
        :class:`~qtasks_core.storage.TaskExists`, told the same way."""
        prepared = await self.prepare(call, uuid)
        broker, storage, _ = self.app._build()
        try:
            written = await storage.write(prepared.uuid, prepared.model, prepared.record)
            # Without a fixed uuid, only an enqueue resent after a lost reply meets its
            # own record: written, then.
            if not written and uuid is not None:
                raise TaskExists(prepared.uuid)
        except Exception as exc:
            await broker.failed([prepared.model], exc)
            raise
        return await self.announce(prepared.uuid, prepared.model)

    async def add_many(self, calls: list[Call]) -> list[Task]:
        """A batch through every step, written in one atomic call."""
        prepared = await self.prepare_many(calls)
        broker, storage, _ = self.app._build()
        try:
            await storage.write_many([(p.uuid, p.model, p.record) for p in prepared])
        except Exception as exc:
            await broker.failed([p.model for p in prepared], exc)
            raise
        return [await self.announce(p.uuid, p.model) for p in prepared]

    async def announce(self, uuid: str, model: TaskStatusNewSchema) -> Task:
        """Step 5: a task was written; returns the caller's view of it."""
        app = self.app
        broker, storage, _ = app._build()
        await fired(app.pm.hook.broker_add_after(broker=broker, storage=storage, model=model))
        # Validating (pydantic-core, in Rust) is faster here than model_construct.
        created_at = datetime.fromtimestamp(model.created_at, tz=UTC)
        task = Task(
            status="new",
            uuid=uuid,
            priority=model.priority,
            task_name=model.task_name,
            args=model.args,
            kwargs=model.kwargs,
            created_at=created_at,
            updated_at=(
                created_at
                if model.updated_at == model.created_at
                else datetime.fromtimestamp(model.updated_at, tz=UTC)
            ),
            extra=model.extra,
            queue=model.queue,
            retried_from=model.retried_from,
            # From the server's created_at; the backend keeps its own (the same).
            eta=created_at + timedelta(seconds=model.delay) if model.delay else None,
            expires=(
                created_at + timedelta(seconds=model.expires) if model.expires is not None else None
            ),
        )
        await fired(app.pm.hook.qtasks_add_task_after_broker(qtasks=app, broker=broker, task=task))
        return task

    async def step_written(self, uuid: str) -> None:
        """Step 5 for a workflow's step the backend wrote in a call of this process,
        from the record as written."""
        task = await self.app._build()[1].get(uuid)
        if task is None:
            return  # gone already (ended and expired): nothing to tell
        model = TaskStatusNewSchema(
            task_name=task.task_name,
            priority=task.priority,
            args=task.args,
            kwargs=task.kwargs,
            created_at=task.created_at.timestamp(),
            extra=task.extra,
            queue=task.queue,
        )
        await self.announce(uuid, model)
