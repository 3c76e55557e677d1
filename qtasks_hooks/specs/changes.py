"""The status-change trigger (``storage_status_changed``): an extension beyond the 52
triggers of the reference, which stay unchanged.

Every transition of every task fires it once, wherever it is made: a worker's claim and
finish, a producer's enqueue, a cancel from the dashboard or the CLI, and the steps the
engine takes on its own inside those calls (a delayed task falling due, a dead worker's
task queued again, a workflow's next step, an expiry, a dead letter). This is what an
audit log, an error reporter or a metrics exporter builds on. The same changes go onto
the app's event stream, which ``app.events()`` and ``qtasks events`` read from any
process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtasks_hooks._markers import hookspec

if TYPE_CHECKING:
    from qtasks_core.schemas import StatusChange
    from qtasks_core.storage import Storage


@hookspec
def storage_status_changed(storage: Storage, change: StatusChange) -> None:
    """A task moved from one status to another: fired exactly once per transition.

    Fired in the process whose call made the change (a worker, a producer, the
    scheduler, the CLI, the dashboard), after the change is durable in the backend, and
    before that call returns: in order, for each change the call made. A call that
    changes nothing (a cancel refused because the task already ran, an enqueue of a
    uuid that exists) fires nothing. A change the engine makes on its own inside a call
    (a delayed task falling due or a dead worker's task queued again, met by a worker's
    claim; a workflow's next step written by the finish of the step before) is fired by
    the process of that call. Fetch the whole task with ``storage.get(change.uuid)``.

    The transitions, as ``previous -> status (reason)``:

    - enqueue: ``None -> new``, or ``None -> delayed`` with a delay; a workflow's own
      record ``None -> process``; its members ``None -> new`` when their turn comes;
    - ``delayed -> new`` and ``retry -> new`` when due; ``new -> delayed
      (rate_limit)``; ``new -> parked (concurrency_limit)`` and ``parked -> new``;
    - ``new -> process`` (claimed); ``process -> success``, ``process -> error`` and
      ``process -> retry`` (reason: the exception type), ``process -> cancel``
      (``aborted``, or ``cancelled`` by the task);
    - ``process -> new`` (``lease_expired``: its worker died; ``released``: handed
      back by a worker stopping);
    - ``-> cancel``: ``expired``, ``aborted``, ``cancelled`` (``app.cancel``),
      ``purged``, ``workflow_failed`` (a workflow's fail-fast);
    - dead letters: ``-> dead`` (``poison``, ``malformed``, ``claim_failed``,
      ``corrupt_key``), ``dead -> new (requeued)``, ``dead -> deleted``;
    - a workflow's end: ``process -> success``, ``process -> error``
      (``member_failed``, ``workflow_broken``), ``process -> cancel (aborted)``.

    Not transitions: progress, lease renewals, the deletion of finished records
    (``qtasks purge``) and a record's expiry after its ``result_ttl``.

    A plugin that raises is logged and the others still run: the change is made. An
    async impl is awaited; the call that made the change waits for it, so keep it
    short (hand slow work to a queue of your own).

    :param storage: The storage of the app whose task changed.
    :param change: The transition: ``uuid``, ``task_name``, ``queue``, ``previous``
        (``None`` for a task just written), ``status``, ``reason`` (a word, or
        ``None``), ``at`` (the Redis server's time, in seconds), ``attempt`` and
        ``worker``. See :class:`qtasks_core.schemas.StatusChange`.
    :return: The return value is ignored.
    """
