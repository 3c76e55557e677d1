"""Worker: claims tasks and runs them. Fires the ``worker_*`` triggers.

The claim loop takes at most the worker's free slots, blocks in the backend when the
queue is empty (no polling), and keeps a lease on every task it runs, renewed by a
heartbeat; a task whose worker died is claimed again once its lease expires. Nothing
a plugin or a task raises stops the loop: the task ends ``error`` with the traceback
(which names the plugin) and the worker goes on. A backend outage is retried with
backoff; a result that could not be written is written once the backend is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import json
import logging
import math
import os
import socket
import threading
import time
import traceback
import uuid as uuidlib
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._util import dumps, fired, lifecycle
from ._validate import check_queue, parse_rate_limit
from .broker import task_schema
from .errors import BackendError, TaskCancel, TaskNotFoundError
from .executor import TaskExecutor
from .keys import DEFAULT_QUEUE
from .schemas import (
    FinishedModel,
    TaskExecSchema,
    TaskPrioritySchema,
    TaskStatusCancelSchema,
    TaskStatusErrorSchema,
    TaskStatusProcessSchema,
    TaskStatusSuccessSchema,
)

if TYPE_CHECKING:
    from .app import BaseQueueTasks
    from .backends.base import Claim
    from .broker import Message

log = logging.getLogger("qtasks.worker")

#: The longest an idle worker blocks before it looks for expired leases again.
IDLE_WAKE = 5.0


class _Outage:
    """Bounded logging of backend errors: the first failure of an outage is logged in
    full, the rest at most once per ``every`` seconds, and its end once."""

    __slots__ = ("_last", "_since", "every", "suppressed")

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self._since: float | None = None
        self._last = 0.0
        self.suppressed = 0

    def failed(self, exc: BackendError, doing: str, retry_in: float) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = self._last = now
            log.warning("backend error while %s: %s; retrying in %.1fs", doing, exc, retry_in)
        elif now - self._last >= self.every:
            log.warning(
                "backend still failing after %.0fs (%d more errors): %s",
                now - self._since,
                self.suppressed,
                exc,
            )
            self._last = now
            self.suppressed = 0
        else:
            self.suppressed += 1

    def ended(self) -> None:
        if self._since is not None:
            log.warning("backend reachable again after %.1fs", time.monotonic() - self._since)
            self._since = None
            self.suppressed = 0


def _limits(tasks: Iterable[TaskExecSchema]) -> str:
    """The registered tasks' concurrency and rate limits, as JSON for the claim."""
    limits: dict[str, dict[str, int]] = {}
    for spec in tasks:
        limit: dict[str, int] = {}
        if spec.concurrency_limit is not None:
            limit["c"] = spec.concurrency_limit
        if spec.rate_limit is not None:
            limit["r"], limit["p"] = parse_rate_limit(spec.rate_limit)
        if limit:
            limits[spec.name] = limit
    return json.dumps(limits, separators=(",", ":")) if limits else ""


@functools.cache
def _version() -> str:
    """The installed qtasks-core's version, shown beside each worker."""
    try:
        return importlib.metadata.version("qtasks-core")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


T = TypeVar("T")


class _Threads(ThreadPoolExecutor):
    """The pool of plain-function tasks, counting the calls still running: the thread of
    a task that was abandoned (aborted, past ``max_time``, its lease lost) runs on, and
    a suspect must not be run "alone" beside it (see ``Worker._claim_loop``)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.busy = 0
        self._count = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kw: Any) -> Future[T]:
        with self._count:
            self.busy += 1
        future = super().submit(fn, *args, **kw)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._count:
            self.busy -= 1


class Worker:
    """Runs the tasks of ``app``, up to ``concurrency`` at a time.

    :param concurrency: tasks run at once (async tasks share the loop; plain functions
        also need a thread, see ``threads``).
    :param threads: size of the thread pool for plain-function tasks (default:
        ``concurrency``).
    :param lease: seconds a claimed task stays ours without a heartbeat; a dead
        worker's tasks are claimed again by others after at most this long.
    :param max_attempts: deliveries after which a task that keeps killing its worker
        is set aside as a dead letter (0: never).
    :param grace: seconds running tasks get to finish on ``stop()`` before they are
        handed back to the queue.
    :param schedules: run the scheduler of the app's periodic tasks in this worker
        (every worker does by default; each tick is enqueued once however many run).
    :param queues: the queues to take tasks from (default: every queue the app's tasks
        name, and ``default``). They take turns one task at a time, each claim starting
        with the next queue, so a full queue never starves the others; priority order
        holds within each queue.
    """

    def __init__(
        self,
        app: BaseQueueTasks,
        *,
        concurrency: int = 16,
        threads: int | None = None,
        lease: float = 15.0,
        max_attempts: int = 5,
        grace: float = 30.0,
        name: str | None = None,
        queues: Iterable[str] | None = None,
        schedules: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if queues is None:
            named = {spec.queue for spec in app.tasks.values()} - {DEFAULT_QUEUE}
            self.queues = (DEFAULT_QUEUE, *sorted(named))
        else:
            self.queues = tuple(dict.fromkeys(check_queue(q) for q in queues))
            if not self.queues:
                raise ValueError("queues= names no queue: give at least one")
        #: The queue the next claim starts with (advanced on every claim).
        self.turn = 0
        self.schedules = schedules
        self._scheduling_ends = asyncio.Event()
        self._schedule_outage = _Outage()
        self.app = app
        self.concurrency = concurrency
        self.lease = lease
        self.max_attempts = max_attempts
        self.grace = grace
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuidlib.uuid4().hex[:6]}"
        self.threads = _Threads(threads or concurrency, thread_name_prefix="qtasks-task")
        self.started_at = time.time()
        self.tasks_done = 0
        self._active: dict[str, asyncio.Task[None]] = {}
        #: The claim token of each running task (keyed by the claimed uuid); a task
        #: whose lease was lost leaves it, and its result is discarded.
        self._claims: dict[str, str] = {}
        #: Tasks whose code is running now: an abort reaches them here.
        self._executors: dict[str, TaskExecutor] = {}
        #: The limits of the registered tasks, as every claim hands them to the backend.
        self.limits = ""
        self._outage = _Outage()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._aborting = asyncio.Event()
        self._nudges: set[asyncio.Task[Any]] = set()
        #: The claim loop while it waits in _until: stop() cancels that wait (and only it).
        self._waiting: asyncio.Task[Any] | None = None
        self._interrupted = False
        self._claim_batch = max(1, concurrency // 4)
        self._queue_busy = False
        #: A suspect (a task a dead worker held) running alone here: nothing is claimed
        #: beside it, so that if it kills this process, the death is its own.
        self._solo: str | None = None
        #: Set when a claim left a suspect queued for a worker that runs nothing else:
        #: this one stops claiming until its running tasks end (a lease at first, then
        #: however long: ``_isolations`` counts the claims in a row that met one).
        self._isolate_until: float | None = None
        self._isolations = 0
        #: Set when the worker stops claiming: results still unwritten by then (the
        #: backend is away) are given up at this loop time; their leases expire and the
        #: tasks run again elsewhere (at-least-once).
        self._give_up_at: float | None = None

    # -- the public surface --------------------------------------------------------------

    @property
    def running(self) -> list[str]:
        """The uuids of the tasks running now."""
        return list(self._active)

    def stop(self) -> None:
        """Stop claiming; running tasks get ``grace`` seconds, the rest go back.

        Call it from the worker's event loop (``loop.call_soon_threadsafe(worker.stop)``
        from another thread).
        """
        if self._stopping.is_set():
            return  # a second call: the first one's wake-up is under way
        self._stopping.set()
        self._interrupt()
        self._nudge()

    def _interrupt(self) -> None:
        """End the claim loop's current wait (see :meth:`_until`)."""
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not self._interrupted:
            self._interrupted = True
            waiting.cancel()

    def _nudge(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._quietly(self.app.broker.wake(self)))
        self._nudges.add(task)
        task.add_done_callback(self._nudges.discard)

    def abort(self) -> None:
        """Stop now: running tasks are handed back to the queue unfinished."""
        self._aborting.set()
        self._stopping.set()
        self._interrupt()
        self._nudge()

    async def add(
        self,
        task_name: str,
        uuid: str,
        priority: int,
        args: tuple[Any, ...],
        kw: dict[str, Any],
        created_at: float,
        *,
        attempts: int = 1,
        retry: int | None = None,
        extra: dict[str, Any] | None = None,
        queue: str = DEFAULT_QUEUE,
    ) -> TaskPrioritySchema:
        """Accept a claimed task (fires ``worker_add``); the broker calls this."""
        values: dict[str, Any] = {
            "task_name": task_name,
            "uuid": uuid,
            "priority": priority,
            "args": args,
            "kw": kw,
            "created_at": created_at,
        }
        new = await fired(self.app.pm.hook.worker_add(worker=self, **values))
        if new:
            values.update(new)
        return task_schema(values, attempts, retry, extra or {}, queue)

    async def run(self, *, burst: bool = False, only: str | None = None) -> None:
        """Claim and run tasks until :meth:`stop` (or, with ``burst``, an empty queue;
        with ``only``, until the queued task ``only`` and its retries have run: eager
        mode)."""
        app = self.app
        pm = app.pm
        await app.start_async(worker=self)
        self.limits = _limits(app.tasks.values())
        await lifecycle(lambda: pm.hook.worker_start(worker=self), "worker_start")
        await app.broker.listen_start(self)
        heartbeat = asyncio.create_task(self._heartbeat(), name="qtasks-heartbeat")
        scheduler = None
        if self.schedules and only is None:
            from .schedules import Scheduler

            scheduler = asyncio.create_task(
                Scheduler(app).run(self._scheduling_ends, self._schedule_failed),
                name="qtasks-scheduler",
            )
        try:
            if only is not None:
                await self._run_only(only)
            else:
                await self._claim_loop(burst)
        finally:
            self._give_up_at = asyncio.get_running_loop().time() + self.grace
            # No tick is enqueued once the worker stops claiming (a burst ends too); a
            # tick under way completes (not cancelled: its step is one function call).
            self._scheduling_ends.set()
            await self._drain()
            # Not cancelled: redis-py may swallow a cancellation mid-command, which
            # would leave the heartbeat hanging; it ends at its next check instead.
            self._finished.set()
            await asyncio.gather(
                heartbeat, *([scheduler] if scheduler else []), return_exceptions=True
            )
            await self._quietly(app.global_config.clear_status(self.id))
            if self._nudges:
                # The wake-ups stop() sent: finished here, not left pending on a loop
                # that may close (a pending one is destroyed mid-command).
                await asyncio.wait(set(self._nudges), timeout=2)
            await lifecycle(lambda: pm.hook.worker_stop(worker=self), "worker_stop")
            self.threads.shutdown(wait=False, cancel_futures=True)

    # -- claiming ------------------------------------------------------------------------

    async def _claim_loop(self, burst: bool) -> None:
        broker = self.app.broker
        backoff = 0.1
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            free = self.concurrency - len(self._active)
            if self._solo is not None:
                if self._solo in self._active:
                    free = 0
                else:
                    self._solo = None
            if self._isolate_until is not None:
                if self._active and loop.time() < self._isolate_until:
                    self._slot_freed.clear()
                    left = self._isolate_until - loop.time()
                    await self._until(self._slot_freed.wait(), None if math.isinf(left) else left)
                    continue
                self._isolate_until = None
            # Busy: a task runs, or the thread of one that was abandoned (aborted, past
            # max_time, its lease lost) still does. Only a worker that is not may run a
            # suspect, which is then alone in its process.
            busy = bool(self._active) or self.threads.busy > 0
            if free <= 0:
                self._slot_freed.clear()
                await self._until(self._slot_freed.wait(), None)
                continue
            if self._active and free < self._claim_batch and self._queue_busy:
                # Short tasks free slots quickly: wait a moment so one round trip claims
                # several; long ones do not hold the free slots back for more than that.
                self._slot_freed.clear()
                await self._until(self._slot_freed.wait(), 0.002)
                free = self.concurrency - len(self._active)
            try:
                messages, claimed = await broker.claim(self, free, alone=not busy)
                backoff = 0.1
                self._outage.ended()
            except BackendError as exc:
                self._outage.failed(exc, "claiming", backoff)
                await self._until(asyncio.sleep(backoff), None)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:
                # Our own bug or a plugin in broker_running_older_tasks: never the end of
                # the loop.
                log.exception("claiming failed; retrying in %.1fs", backoff)
                await self._until(asyncio.sleep(backoff), None)
                backoff = min(backoff * 2, 5.0)
                continue
            if messages and log.isEnabledFor(logging.DEBUG):
                log.debug("claimed %s", ", ".join(f"{m.claim.uuid}#{m.attempts}" for m in messages))
            for message in messages:
                uuid = message.claim.uuid
                self._claims[uuid] = message.claim.token
                self._active[uuid] = asyncio.create_task(self._run_task(message))
            if claimed.suspects:
                # A suspect waits for a worker that runs nothing: this one stops claiming
                # until it is empty, for a lease at first; when a suspect still waits
                # after that, until it is empty however long (so the suspect runs on the
                # first worker that empties, even where every task outlasts a lease).
                self._isolations += 1
                span = self.lease if self._isolations == 1 else math.inf
                self._isolate_until = loop.time() + span
                if self._active:
                    continue  # to that wait
            else:
                self._isolations = 0
            for row in claimed.tasks:
                if row.get("solo"):
                    self._solo = row["uuid"]
                    log.warning(
                        "running task %s alone: it was running when a worker died, and "
                        "may have killed it",
                        row["uuid"],
                    )
            # A full claim means more may be queued: keep batching claims meanwhile.
            self._queue_busy = len(claimed.tasks) >= free
            if self._queue_busy:
                continue
            if burst and not self._active and claimed.next_due is None:
                return
            if burst and self._active:
                await self._until(self._slot_freed.wait(), None)
                self._slot_freed.clear()
                continue
            wake = claimed.next_wake
            # Just past the moment (the scripts count whole ms of the server's clock), so
            # the claim finds the task due or the lease ended.
            timeout = IDLE_WAKE if wake is None else min(IDLE_WAKE, wake + 0.001)
            try:
                await self._until(broker.wait_for_work(timeout, self), None)
            except BackendError as exc:
                self._outage.failed(exc, "waiting for work", backoff)
                await self._until(asyncio.sleep(backoff), None)

    async def _run_only(self, uuid: str) -> None:
        broker = self.app.broker
        while not self._stopping.is_set():
            messages, claimed = await broker.claim(self, 1, only=uuid)
            if messages:
                self._claims[uuid] = messages[0].claim.token
                await self._run_task(messages[0])
                continue
            task = await self.app.storage.get(uuid)
            if task is None or task.status != "retry":
                return
            # Its retry waits in the backend like any other: sleep until the next due
            # task (this one, or an earlier one), then claim it again.
            await asyncio.sleep(claimed.next_due or 0.001)

    async def _until(self, awaitable: Coroutine[Any, Any, Any], timeout: float | None) -> None:
        """Await ``awaitable`` for at most ``timeout`` seconds (``None``: no limit), unless
        stop() comes first: then it is cancelled, and this returns.

        It runs in the claim loop's own task, which stop() cancels while it waits here
        (and only here: ``_waiting`` is set around this one ``await``). A task and a
        stopper task per wait, as asyncio.wait needs, cost about 50 µs of CPU, and this
        is every wait of the claim loop (one per task when tasks come one at a time).
        """
        if self._stopping.is_set():
            awaitable.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._waiting = task
        try:
            if timeout is None:
                await awaitable
            else:
                deadline = asyncio.timeout(timeout)
                try:
                    async with deadline:
                        await awaitable
                except TimeoutError:
                    if not deadline.expired():
                        raise  # the awaitable's own
        except asyncio.CancelledError:
            if not self._interrupted:
                raise
            # Our own cancel (stop()): taken back, so that the task counts no cancel
            # request it will never see again (asyncio.timeout reads that count).
            self._interrupted = False
            task.uncancel()
            if task.cancelling():
                raise  # cancelled from outside as well: that one stands
        finally:
            self._waiting = None
            if self._interrupted:
                # stop() came as the wait ended, and the awaitable took the cancel
                # without raising it: the request is taken back all the same.
                self._interrupted = False
                task.uncancel()

    async def _drain(self) -> None:
        """Give running tasks ``grace`` seconds (less after :meth:`abort`), then hand
        the rest back to the queue."""
        if not self._active:
            return
        log.info("waiting up to %.0fs for %d running task(s)", self.grace, len(self._active))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        running = dict(self._active)
        pending = set(running.values())
        aborting = asyncio.ensure_future(self._aborting.wait())
        while pending and not aborting.done() and loop.time() < deadline:
            done, _ = await asyncio.wait(
                [*pending, aborting],
                timeout=deadline - loop.time(),
                return_when=asyncio.FIRST_COMPLETED,
            )
            pending -= done
        aborting.cancel()
        left = [uuid for uuid, task in running.items() if not task.done()]
        if not left:
            return
        # Taken before cancelling: a cancelled task forgets its claim as it ends.
        claims = {uuid: self._claims[uuid] for uuid in left if uuid in self._claims}
        for uuid in left:
            running[uuid].cancel()
        # A task in a thread cannot be interrupted; its asyncio side ends at once.
        await asyncio.wait([running[uuid] for uuid in left], timeout=5)
        released = await self._quietly(self.app.broker.release(claims))
        log.warning("handed back %d unfinished task(s) to the queue", len(released or []))

    async def _schedule_failed(self, exc: BaseException) -> float:
        assert isinstance(exc, BackendError)
        self._schedule_outage.failed(exc, "firing periodic tasks", 1.0)
        return 1.0

    async def _heartbeat(self) -> None:
        # Every lease/6: the backend treats a silence over lease/3 as an outage (see
        # backends/_lua.py), so one missed beat never costs a running task its lease.
        interval = self.lease / 6
        beats = _Outage()
        while not self._finished.is_set():
            try:
                claims = dict(self._claims)
                renewed = await self.app.broker.extend(claims, self.lease)
                for uuid in renewed.lost:
                    self._lose(uuid, claims[uuid])
                    # Another worker runs it now (and its limit slot is that one's): this
                    # run stops as an abort does, its result discarded by the fence.
                    self._stop_run(
                        uuid, claims[uuid], "the lease was lost: the task runs on another worker"
                    )
                for uuid, reason in renewed.aborted.items():
                    if self._stop_run(uuid, claims[uuid], reason):
                        log.info("aborting task %s: %s", uuid, reason or "(no reason given)")
                # The liveness record (a plugin trigger and a write) must never hold up
                # the next renewal: bounded by the beat.
                await asyncio.wait_for(
                    self.app.global_config.set_status(self.id, self.status(), self.lease),
                    interval,
                )
                wait = interval
            except BackendError as exc:
                beats.failed(exc, "renewing leases", 0.2)
                wait = min(interval, 0.2)  # back soon: the backend may be back already
            except Exception:
                # A plugin in global_config_set_status, or the liveness record took too
                # long: the leases were renewed already.
                log.exception("the worker's liveness record failed; going on")
                wait = interval
            else:
                beats.ended()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), wait)

    def status(self) -> dict[str, Any]:
        """This worker's liveness record (what ``qtasks stats`` lists)."""
        return {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "concurrency": self.concurrency,
            "queues": list(self.queues),
            "running": self.running,
            "tasks_done": self.tasks_done,
            "beat_at": time.time(),
            "version": _version(),
        }

    # -- running one task ----------------------------------------------------------------

    async def _run_task(self, message: Message) -> None:
        claim = message.claim
        try:
            try:
                task_broker = await self._accept(message)
            except BackendError:
                raise
            except Exception as exc:
                # A plugin failed on the way in (worker_add, storage_add_process): that
                # task ends error naming it; the worker goes on.
                task_func = self.app.tasks.get(message.values["task_name"])
                failed = await self._failed(task_func, message.schema(), exc, retry=False)
                await self.app.storage.fail(claim, message.schema(), failed.traceback)
                return
            task_func, task_broker, model = await self._execute(task_broker, claim)
            await self._finish(task_func, task_broker, model, claim)
        except asyncio.CancelledError:
            raise  # shutdown past the grace period: _drain hands the task back
        except Exception:
            log.exception(
                "task %s could not be finished; its lease will expire and it will run again",
                claim.uuid,
            )
        finally:
            # Only this run's own entries: the same task may have been claimed again by
            # this worker after a lost lease, and that run is still going.
            if self._active.get(claim.uuid) is asyncio.current_task():
                del self._active[claim.uuid]
            if self._claims.get(claim.uuid) == claim.token:
                del self._claims[claim.uuid]
            self.tasks_done += 1
            self._slot_freed.set()

    async def _accept(self, message: Message) -> TaskPrioritySchema:
        """Take a claimed task: fires ``worker_add`` and ``storage_add_process``."""
        task = await self.add(
            **message.values,
            attempts=message.attempts,
            retry=message.retry,
            extra=message.extra,
            queue=message.queue,
        )
        process = TaskStatusProcessSchema(
            uuid=task.uuid, task_name=task.task_name, priority=task.priority, worker=self.id
        )
        _, priority = await self.app.storage.add_process(process, task.priority, message.claim)
        return task if priority == task.priority else task.model_copy(update={"priority": priority})

    def _stop_run(self, uuid: str, token: str, reason: str) -> bool:
        """Abort the run of ``uuid`` under claim ``token``, if its code runs here and is
        not stopping already; whether it was told."""
        executor = self._executors.get(uuid)
        if executor is None or executor.claim_token != token or executor.abort_reason is not None:
            return False
        executor.abort(reason)
        return True

    def _lose(self, uuid: str, token: str) -> None:
        """The lease of claim ``token`` on ``uuid`` ran out and another worker claimed
        the task (this one was stopped or cut off): stop renewing it; its late result
        is discarded."""
        if self._claims.get(uuid) == token:
            del self._claims[uuid]
            log.warning(
                "lost the lease on task %s (it ran past its lease without a heartbeat and "
                "was claimed again elsewhere); its result here will be discarded",
                uuid,
            )

    async def _execute(
        self, task_broker: TaskPrioritySchema, claim: Claim
    ) -> tuple[TaskExecSchema | None, TaskPrioritySchema, FinishedModel]:
        pm = self.app.pm
        task_func = self.app.tasks.get(task_broker.task_name)
        try:
            new = await fired(
                pm.hook.worker_run_task_before(
                    worker=self, task_func=task_func, task_broker=task_broker
                )
            )
            if new:
                task_func = new.get("task_func", task_func)
                task_broker = new.get("task_broker", task_broker)
            model = TaskStatusProcessSchema(
                uuid=task_broker.uuid,
                task_name=task_broker.task_name,
                priority=task_broker.priority,
                worker=self.id,
            )
            new = await fired(
                pm.hook.worker_execute_before(
                    worker=self, task_broker=task_broker, task_func=task_func, model=model
                )
            )
            if new is not None:
                model = new
                await self.app.storage.write_process_state(model, claim)
            if task_func is None:
                raise TaskNotFoundError(
                    f"no task named {task_broker.task_name!r} is registered in app "
                    f"{self.app.name!r} on this worker (registered: "
                    f"{', '.join(sorted(self.app.tasks)) or 'none'})"
                )
            executor_cls = task_func.executor or TaskExecutor
            executor = executor_cls(
                task_func, task_broker, app=self.app, pm=pm, threads=self.threads, model=model
            )
            executor.claim_token = claim.token
            self._executors[task_broker.uuid] = executor
            try:
                result = await executor.execute()
            finally:
                self._executors.pop(task_broker.uuid, None)
            dumps(result, what=f"the result of task {task_broker.task_name!r}")
            final: FinishedModel = TaskStatusSuccessSchema(uuid=task_broker.uuid, returning=result)
        except TaskCancel as exc:
            final = TaskStatusCancelSchema(uuid=task_broker.uuid, cancel_reason=exc.reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            final = await self._failed(task_func, task_broker, exc)
        try:
            await fired(
                pm.hook.worker_execute_after(
                    worker=self, task_func=task_func, task_broker=task_broker, model=final
                )
            )
        except Exception as exc:
            final = await self._failed(task_func, task_broker, exc, retry=False, earlier=final)
        return task_func, task_broker, final

    async def _failed(
        self,
        task_func: TaskExecSchema | None,
        task_broker: TaskPrioritySchema,
        exc: BaseException,
        *,
        retry: bool = True,
        earlier: FinishedModel | None = None,
    ) -> TaskStatusErrorSchema:
        """The error state of a failed attempt, after ``worker_task_error_retry``: fired
        once per attempt, whatever the failure (the task's exception, an unknown task
        name, ``max_time``, a plugin's failure), with ``retryable`` False where no retry
        may follow (a plugin failed the task, or no task of that name is registered
        here). A plugin failing after the attempt had failed already (``earlier``, an
        error state reported then) adds its traceback to that state, whose decision
        (retry or not) stands as reported, and fires nothing again."""
        trace = "".join(traceback.format_exception(exc))
        if isinstance(earlier, TaskStatusErrorSchema):
            return earlier.model_copy(
                update={"traceback": earlier.traceback + "\nthen a plugin failed:\n" + trace}
            )
        model = TaskStatusErrorSchema(uuid=task_broker.uuid, traceback=trace)
        retryable = retry and task_func is not None
        try:
            new = await fired(
                self.app.pm.hook.worker_task_error_retry(
                    worker=self,
                    broker=self.app.broker,
                    task_func=task_func,
                    task_broker=task_broker,
                    trace=trace,
                    exc=exc,
                    model=model,
                    retryable=retryable,
                )
            )
        except Exception as plugin_exc:
            return TaskStatusErrorSchema(
                uuid=task_broker.uuid,
                traceback=trace
                + "\nwhile deciding on a retry:\n"
                + "".join(traceback.format_exception(plugin_exc)),
            )
        if new is None:
            return model
        new = cast(TaskStatusErrorSchema, new)
        if not retryable and new.status != "error":
            # Never an endless retry of a failure that is not the task's own.
            return new.model_copy(update={"status": "error", "retry": None, "retry_delay": 0.0})
        return new

    async def _finish(
        self,
        task_func: TaskExecSchema | None,
        task_broker: TaskPrioritySchema,
        model: FinishedModel,
        claim: Claim,
    ) -> None:
        app = self.app
        try:
            new = await fired(
                app.pm.hook.worker_remove_finished_task(
                    worker=self,
                    broker=app.broker,
                    task_func=task_func,
                    task_broker=task_broker,
                    model=model,
                )
            )
            if new:
                task_broker = new.get("task_broker", task_broker)
                model = new.get("model", model)
        except Exception as exc:
            model = await self._failed(task_func, task_broker, exc, retry=False, earlier=model)
        try:
            final = await app.broker.finish_triggers(task_broker, model)
        except Exception as exc:
            # A plugin raised in broker/storage_remove_finished_task: whatever its type
            # (an OSError of its own included), it fails this task.
            failed = await self._failed(task_func, task_broker, exc, retry=False, earlier=model)
            written = await app.storage.fail(claim, task_broker, failed.traceback)
        else:
            written = await self._write_final(final, claim)
        if not written:
            self._lose(claim.uuid, claim.token)

    async def _write_final(self, model: FinishedModel, claim: Claim) -> bool:
        """Write a final state, retrying through a backend outage (the triggers fired
        once, before); given up ``grace`` seconds after the worker stopped claiming."""
        backoff = 0.1
        while True:
            try:
                return await self.app.storage.write_final(model, claim)
            except BackendError as exc:
                give_up_at = self._give_up_at
                past_grace = (
                    give_up_at is not None and asyncio.get_running_loop().time() > give_up_at
                )
                if not exc.retryable or past_grace:
                    raise
                self._outage.failed(exc, f"storing the result of {claim.uuid}", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _quietly(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except Exception as exc:
            log.warning("during shutdown: %s", exc)
            return None
