"""``QueueTasks``: the app. Declare tasks, send them, read results; fires ``qtasks_*``.

The app is a façade over modules that each hold one feature:

=====================  ============================================================
module                 what it adds to the app
=====================  ============================================================
:mod:`.declare`        ``@app.task``, routers, ``shared_task``, the task handle
:mod:`.wiring`         settings, plugins, the engine and the components; start/stop
:mod:`.reading`        ``get``, ``list_tasks``, ``wait``, ``watch``, ``events``
:mod:`.sending`        ``send_task``, ``add_task``, ``add_tasks``, eager mode
:mod:`.operating`      ``cancel``, ``abort``, ``retry``, dead letters, purges
:mod:`.workflows`      ``start_workflow``, ``workflow``, ``list_workflows``
:mod:`.schedules`      ``periodic``, ``add_schedule``, ``schedules``
:mod:`.running`        ``worker``, ``serve``, ``running_worker``, ``run_forever``
=====================  ============================================================

Every operation is written once, as the coroutine ``<name>_async`` of
:class:`BaseQueueTasks`. ``QueueTasks`` adds its blocking twin ``<name>``, run on the
app's event-loop thread (:mod:`._edges`); ``qtasks_core.asyncio.QueueTasks`` gives the
coroutine itself under the plain name.
"""

from __future__ import annotations

from ._edges import sync_edge, sync_iter_edge
from .declare import (
    AsyncRouter,
    AsyncTaskHandle,
    Router,
    SyncRouter,
    SyncTaskHandle,
    TaskHandle,
    shared_task,
)
from .operating import AdminOps
from .running import WorkerOps
from .schedules import ScheduleOps
from .wiring import ENV_REDIS_URL
from .workflows import WorkflowOps

__all__ = [
    "ENV_REDIS_URL",
    "AsyncRouter",
    "AsyncTaskHandle",
    "BaseQueueTasks",
    "QueueTasks",
    "Router",
    "SyncRouter",
    "SyncTaskHandle",
    "TaskHandle",
    "shared_task",
]


class BaseQueueTasks(AdminOps, WorkflowOps, ScheduleOps, WorkerOps):
    """What both apps are: declaring, wiring and every operation as a coroutine.

    :param name: the app's name; apps of one name share queues and results. 1 to 128
        ASCII letters, digits, ``_``, ``.`` and ``-`` (it is part of every Redis key).
    :param redis_url: ``redis://``, ``rediss://`` or ``unix://`` URL, or ``memory://``
        for the in-process backend. Default: ``$QTASKS_REDIS_URL``, else the user's
        embedded Valkey server (:mod:`qtasks_core.embedded`, started on first use), or
        the in-memory backend in eager mode.
    :param result_ttl: seconds a finished task stays readable (``None``: forever);
        ``"config"`` (default): ``$QTASKS_RESULT_TTL``, else 86400. The same as
        ``app.config.result_ttl``.
    :param config: the settings (:class:`~qtasks_core.config.QueueConfig`); default one
        read from the ``QTASKS_*`` environment variables. Later changes to
        ``app.config`` take effect where they apply.
    :param plugins: plugins to register besides the entry-point ones.
    :param load_entry_points: load ``qtasks.plugins`` entry points when the app starts.
    :param allow_plugins: / :param block_plugins: entry-point names to keep / skip (also
        ``$QTASKS_PLUGINS`` / ``$QTASKS_DISABLE_PLUGINS``).
    :param max_payload: largest accepted size of a task's JSON arguments, in bytes.
    :param broker_url: the original QTasks' name for ``redis_url``.
    :param events: append every status change of every task this process makes to the
        app's capped event stream, which :meth:`events` and ``qtasks events`` read from
        any process (default ``$QTASKS_EVENTS``, else off: about 3 stream entries per
        task cost some 8 % of throughput). The ``storage_status_changed`` trigger fires
        either way. The same as ``app.config.events``.
    :param events_max: entries the event stream keeps (about: trimmed with ``MAXLEN
        ~``); default ``$QTASKS_EVENTS_MAX``, else 10,000.
    """


class QueueTasks(BaseQueueTasks):
    """A QTasks app, for sync and async callers alike: each operation ``<name>_async``
    is a coroutine for code in an event loop, and ``<name>`` blocks (it runs the same
    coroutine on the app's own event-loop thread). The parameters are
    :class:`BaseQueueTasks`'.

    For code that lives in an event loop, :mod:`qtasks_core.asyncio`'s app makes the
    plain names coroutines too.
    """

    # -- the sync edge: one line per operation of BaseQueueTasks ---------------------

    add_task = sync_edge(BaseQueueTasks.add_task_async)
    send_task = sync_edge(BaseQueueTasks.send_task_async)
    add_tasks = sync_edge(BaseQueueTasks.add_tasks_async)

    get = sync_edge(BaseQueueTasks.get_async)
    list_tasks = sync_edge(BaseQueueTasks.list_tasks_async)
    wait = sync_edge(BaseQueueTasks.wait_async)
    watch = sync_iter_edge(BaseQueueTasks.watch_async)
    events = sync_iter_edge(BaseQueueTasks.events_async)

    cancel = sync_edge(BaseQueueTasks.cancel_async)
    abort = sync_edge(BaseQueueTasks.abort_async)
    retry = sync_edge(BaseQueueTasks.retry_async)
    ping = sync_edge(BaseQueueTasks.ping_async)
    dead_letters = sync_edge(BaseQueueTasks.dead_letters_async)
    dead_letter_page = sync_edge(BaseQueueTasks.dead_letter_page_async)
    requeue_dead = sync_edge(BaseQueueTasks.requeue_dead_async)
    delete_dead = sync_edge(BaseQueueTasks.delete_dead_async)
    purge_queue = sync_edge(BaseQueueTasks.purge_queue_async)
    purge = sync_edge(BaseQueueTasks.purge_async)
    migrate_keys = sync_edge(BaseQueueTasks.migrate_keys_async)
    flush_all = sync_edge(BaseQueueTasks.flush_all_async)

    start_workflow = sync_edge(BaseQueueTasks.start_workflow_async)
    list_workflows = sync_edge(BaseQueueTasks.list_workflows_async)
    workflow = sync_edge(BaseQueueTasks.workflow_async)

    add_schedule = sync_edge(BaseQueueTasks.add_schedule_async)
    remove_schedule = sync_edge(BaseQueueTasks.remove_schedule_async)
    schedules = sync_edge(BaseQueueTasks.schedules_async)

    start = sync_edge(BaseQueueTasks.start_async)

    def stop(self) -> None:
        """Sync twin of :meth:`stop_async`; also stops workers started by
        :meth:`running_worker` and ends the app's event-loop thread."""
        for worker in list(self._portal_workers):
            self._stop_portal_worker(worker)
        if self._started:
            self._portal.call(self.stop_async())
        self._portal.close()
