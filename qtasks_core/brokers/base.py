"""Broker: the queue side of the flow. Fires the ``broker_*`` triggers."""

from __future__ import annotations

import logging
import traceback
import uuid as uuidlib
from typing import TYPE_CHECKING, Any

from .._util import fired, lifecycle, loads
from ..schemas import (
    FinishedModel,
    Task,
    TaskPrioritySchema,
    TaskStatusNewSchema,
    TaskStatusProcessSchema,
)

if TYPE_CHECKING:
    from qtasks_hooks import PluginManager

    from ..backends.base import Backend, Claimed
    from ..storages.base import Storage
    from ..worker import Worker

log = logging.getLogger("qtasks.broker")


class Broker:
    """Queues tasks (priority first, FIFO within one) and hands them to workers."""

    def __init__(self, backend: Backend, storage: Storage, pm: PluginManager) -> None:
        self.backend = backend
        self.storage = storage
        self.pm = pm

    async def start(self, worker: Worker | None = None) -> None:
        await lifecycle(
            lambda: self.pm.hook.broker_start(broker=self, worker=worker), "broker_start"
        )

    async def stop(self) -> None:
        await lifecycle(lambda: self.pm.hook.broker_stop(broker=self), "broker_stop")

    async def add(
        self,
        task_name: str,
        priority: int,
        args: tuple[Any, ...],
        kw: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, TaskStatusNewSchema]:
        """Queue a task; returns its uuid and the model written."""
        model = await self._before(task_name, priority, args, kw, extra)
        uuid, model = await self.storage.add(str(uuidlib.uuid4()), model)
        await fired(self.pm.hook.broker_add_after(broker=self, storage=self.storage, model=model))
        return uuid, model

    async def add_many(
        self,
        calls: list[tuple[str, int, tuple[Any, ...], dict[str, Any], dict[str, Any]]],
    ) -> list[tuple[str, TaskStatusNewSchema]]:
        """:meth:`add` for a batch of ``(task_name, priority, args, kw, extra)``."""
        models = [await self._before(*call) for call in calls]
        added = await self.storage.add_many([(str(uuidlib.uuid4()), m) for m in models])
        for _, model in added:
            await fired(
                self.pm.hook.broker_add_after(broker=self, storage=self.storage, model=model)
            )
        return added

    async def _before(
        self,
        task_name: str,
        priority: int,
        args: tuple[Any, ...],
        kw: dict[str, Any],
        extra: dict[str, Any] | None,
    ) -> TaskStatusNewSchema:
        model = TaskStatusNewSchema(
            task_name=task_name, priority=priority, args=args, kwargs=kw, extra=extra or {}
        )
        new = await fired(
            self.pm.hook.broker_add_before(broker=self, storage=self.storage, model=model)
        )
        return model if new is None else new

    async def get(self, uuid: str, record: dict[str, str] | None = None) -> Task | None:
        """The task ``uuid`` (from ``record`` when the caller already holds it)."""
        task = await self.storage.get(uuid, record)
        new = await fired(self.pm.hook.broker_get(broker=self, task=task))
        return task if new is None else new

    async def update(self, **kw: Any) -> bool:
        """Update fields of the task ``kw['uuid']`` (e.g. ``status='cancel'``)."""
        new = await fired(self.pm.hook.broker_update(broker=self, kw=kw))
        return await self.storage.update(**(kw if new is None else new))

    async def listen_start(self, worker: Worker) -> None:
        await lifecycle(
            lambda: self.pm.hook.broker_listen_start(broker=self, worker=worker),
            "broker_listen_start",
        )

    async def claim(self, worker: Worker, n: int) -> tuple[list[TaskPrioritySchema], Claimed]:
        """Claim up to ``n`` tasks for ``worker`` (with a lease) and hand them over."""
        claimed = await self.backend.claim(n, worker.id, worker.lease, worker.max_attempts)
        if claimed.recovered:
            try:
                await self.running_older_tasks(worker, claimed.recovered)
            except Exception:
                log.exception(
                    "a plugin failed while %d task(s) were recovered; going on",
                    len(claimed.recovered),
                )
        tasks = []
        for raw in claimed.tasks:
            try:
                task = await self._hand_over(worker, raw)
            except Exception as exc:
                # A plugin failed on the way to the worker: that task fails, not the batch.
                await self.backend.finish(
                    raw["uuid"],
                    {"status": "error", "traceback": "".join(traceback.format_exception(exc))},
                    self.storage.result_ttl,
                    None,
                )
                continue
            if task is not None:
                tasks.append(task)
        return tasks, claimed

    async def _hand_over(self, worker: Worker, raw: dict[str, str]) -> TaskPrioritySchema | None:
        uuid = raw["uuid"]
        try:
            args = tuple(loads(raw["args"], []))
            kw = loads(raw["kwargs"], {})
            extra = loads(raw["extra"], {})
            if not isinstance(kw, dict) or not isinstance(extra, dict):
                raise ValueError("kwargs and extra must be JSON objects")
            priority, created_at = int(raw["priority"]), float(raw["created_at"])
        except (ValueError, TypeError) as exc:
            # A malformed message is set aside with its reason; it never reaches a task.
            reason = f"malformed message: {type(exc).__name__}: {exc}"
            log.error("task %s set aside: %s", uuid, reason)
            await self.backend.dead_letter(uuid, reason, repr(raw)[:2000])
            await self.backend.finish(
                uuid, {"status": "error", "traceback": reason}, self.storage.result_ttl, None
            )
            return None
        values: dict[str, Any] = {
            "task_name": raw["task_name"],
            "uuid": uuid,
            "priority": priority,
            "args": args,
            "kw": kw,
            "created_at": created_at,
        }
        new = await fired(self.pm.hook.broker_add_worker(broker=self, worker=worker, **values))
        if new:
            values.update(new)
        task = await worker.add(
            **values,
            attempts=int(raw["attempts"] or 1),
            retry=int(raw["retry"]) if raw["retry"] else None,
            extra=extra,
        )
        process = TaskStatusProcessSchema(
            uuid=task.uuid, task_name=task.task_name, priority=task.priority, worker=worker.id
        )
        _, priority = await self.storage.add_process(process, task.priority)
        return task if priority == task.priority else task.model_copy(update={"priority": priority})

    async def running_older_tasks(self, worker: Worker, uuids: list[str]) -> None:
        """Tasks of dead workers went back to the queue: tell plugins and the log."""
        await fired(
            self.pm.hook.broker_running_older_tasks(broker=self, worker=worker, uuids=uuids)
        )
        uuids = await self.storage.running_older_tasks(worker, uuids)
        log.warning(
            "recovered %d task(s) whose worker stopped renewing its lease: %s",
            len(uuids),
            ", ".join(uuids[:10]),
        )

    async def remove_finished_task(
        self, task_broker: TaskPrioritySchema, model: FinishedModel
    ) -> None:
        new = await fired(
            self.pm.hook.broker_remove_finished_task(broker=self, storage=self.storage, model=model)
        )
        await self.storage.remove_finished_task(task_broker, model if new is None else new)

    async def flush_all(self) -> None:
        await fired(self.pm.hook.broker_flush_all(broker=self))
        await self.storage.flush_all()
