"""The storage engine under Broker, Storage, GlobalConfig and the schedules.

A backend does the atomic work (enqueue, claim with a lease, finish, wait) and knows
nothing of plugins: the components fire triggers and call it. Two implement it: Redis
(the real engine, shared by every worker on every machine) and memory (one process).

The contract comes in one part per component that calls it, so a component's
annotation says what it may call and a reader finds each method beside its
neighbours: :class:`LifecycleBackend` (the app that owns the engine),
:class:`BrokerBackend` (:class:`~qtasks_core.broker.Broker`),
:class:`StorageBackend` (:class:`~qtasks_core.storage.Storage`),
:class:`ConfigBackend` (:class:`~qtasks_core.global_config.GlobalConfig`) and
:class:`SchedulerBackend` (the schedules' store). :class:`Backend` is all of them: what
an engine implements, and what the contract suite in ``tests/backends/`` holds on every
backend and transport.

A task record is a flat ``dict[str, str]``; JSON-valued fields are ``args``,
``kwargs``, ``extra`` and ``returning``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..keys import DEFAULT_QUEUE
from ..schemas import FINAL_STATUSES as FINAL_STATUSES
from ..schemas import StatusChange

#: What :meth:`Backend.requeue_dead` did: requeued; not a dead letter (queued, running,
#: finished or unknown: never requeued); a dead letter without a record to run.
RequeueResult = Literal["requeued", "not-dead", "no-record"]


class ChangeSink(Protocol):
    """Takes the status changes of one backend call (see :meth:`Backend.set_feed`)."""

    async def __call__(self, changes: list[StatusChange], /) -> None: ...


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim of a task: its uuid and the token that fences it. Renewing, finishing,
    handing back or setting aside the task take the claim, and do nothing once another
    claim replaced it."""

    uuid: str
    token: str


@dataclass(slots=True)
class Claimed:
    """What one claim returned."""

    #: Claimed records: uuid, task_name, priority, args, kwargs, created_at, attempts,
    #: extra, retry, queue (strings, as stored; queue "" for the default), token (the
    #: claim's fence) and solo ("1": a suspect, to run with nothing beside it).
    tasks: list[dict[str, str]] = field(default_factory=list)
    #: Tasks whose worker's lease expired and that went back into the queue.
    recovered: list[str] = field(default_factory=list)
    #: Tasks set aside because they kept killing their workers.
    dead: list[str] = field(default_factory=list)
    #: Seconds until the next delayed task falls due, if any.
    next_due: float | None = None
    #: Seconds until the first lease expires, if any (a dead worker's task to recover).
    next_lease_end: float | None = None
    #: A suspect (a task a dead worker held) waits for a worker that runs nothing else.
    suspects: bool = False

    @property
    def next_wake(self) -> float | None:
        """When a claim could next find work without an enqueue."""
        times = [t for t in (self.next_due, self.next_lease_end) if t is not None]
        return min(times) if times else None


@dataclass(slots=True)
class Renewed:
    """What a renewal of leases learnt."""

    #: Tasks whose claim the worker no longer holds: it stops renewing them.
    lost: list[str] = field(default_factory=list)
    #: Running tasks someone asked to abort: uuid -> reason.
    aborted: dict[str, str] = field(default_factory=dict)


#: What :meth:`Backend.tick` did: moved the cursor (and enqueued, if asked); nothing,
#: the cursor being elsewhere or the tick not due; nothing, the schedule's definition
#: being no longer the stored one (removed or replaced at run time).
Ticked = Literal["moved", "lost", "stale"]

#: What :meth:`Backend.abort` did: ended a queued or waiting task; asked the worker
#: running it to stop; nothing (already final); nothing (no such task).
AbortResult = Literal["cancelled", "aborting", "ended", "unknown"]


@dataclass(slots=True)
class BackendStats:
    #: Queued tasks per priority, all queues together.
    queued: dict[int, int] = field(default_factory=dict)
    #: Queued tasks per queue, then per priority (every queue ever sent to, and the
    #: default queue, even when empty).
    queues: dict[str, dict[int, int]] = field(default_factory=dict)
    scheduled: int = 0
    running: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)
    dead: int = 0


class LifecycleBackend(Protocol):
    """What the app that owns an engine does with it: connect, say where, let go."""

    #: A printable location without secrets (``redis://host:6379/0``, ``memory``).
    location: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class BrokerBackend(Protocol):
    """What the broker needs: claims under a lease, the waits of idle workers, the
    start of a workflow, and the operator's view of the queues and the dead letters.

    Claims are fenced: each claim of a task gets a new token, and renewing, finishing,
    handing back or setting aside the task succeed only with the token of its current
    claim. A worker whose lease ran out (its task was claimed again elsewhere) learns it
    from :meth:`extend` and :meth:`StorageBackend.finish`, and writes nothing.
    """

    async def claim(
        self,
        n: int,
        worker_id: str,
        lease: float,
        max_attempts: int,
        *,
        only: str | None = None,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        turn: int = 0,
        limits: str = "",
        alone: bool = False,
    ) -> Claimed:
        """Move due delayed tasks and expired leases back to their queues, then claim
        up to ``n`` tasks of ``queues`` for ``worker_id`` with a lease of ``lease``
        seconds (``only``: just that queued task, whatever its queue). The queues take
        turns one task at a time, starting with ``queues[turn % len(queues)]``;
        priority order holds within each. A task past its ``expires`` ends ``cancel``
        (reason ``expired``) instead of being claimed. Entries that cannot be run are
        set aside one by one.

        ``limits`` (JSON ``{task_name: {"c": concurrency, "r": count, "p": period ms}}``,
        ``""`` for none): a task over its concurrency waits out of its queue until a
        running one of its name ends (or its lease runs out); over its rate, it waits
        for the next period like a delayed task. Neither takes a claim.

        Poison: the tasks a dead worker held (its lease ran out) are suspects. A
        suspect is claimed only with ``alone`` (the worker runs nothing now), and then
        alone: its row says ``solo`` ``"1"`` and the worker claims nothing more until it
        ends. Other claims leave it queued and say ``suspects``. A task is set aside
        after its worker died ``max_attempts`` times while it ran alone; the tasks that
        ran beside a crash are never counted."""

    async def wait_for_work(
        self, timeout: float, worker_id: str = "", queues: Sequence[str] = (DEFAULT_QUEUE,)
    ) -> None:
        """Block (no polling) until a task of ``queues`` may be claimable, ``timeout``
        passes, or :meth:`wake` is called for ``worker_id``."""

    async def wake(self, worker_id: str) -> None:
        """End the wait of ``worker_id`` (a worker that is stopping)."""

    async def extend(self, claims: dict[str, str], lease: float) -> Renewed:
        """Renew the leases of ``{uuid: token}``; returns the uuids whose claim is lost
        and the tasks asked to abort (:meth:`StorageBackend.abort`), with the reason."""

    async def release(self, claims: dict[str, str]) -> list[str]:
        """Hand claimed tasks ``{uuid: token}`` back to the queue unrun (a worker
        shutting down); the delivery does not count. Returns the uuids handed back."""

    async def start_workflow(
        self, workflow_id: str, record: dict[str, str], nodes: dict[str, str]
    ) -> bool:
        """Write a workflow's record (status ``process``) and its tree ``nodes`` (path ->
        node as JSON text: ``{"k": "t"|"c"|"g", "n": children, "f": a task's record,
        "p": its priority, "i": immutable}``) and queue its first tasks, atomically.
        From then on the backend advances it as members end, in the same step that
        writes each member's final status. ``False`` if it was started already."""

    async def purge_queue(
        self, queue: str, reason: str = "purged", ttl: float | None = None
    ) -> int:
        """Empty ``queue``: its queued tasks end ``cancel`` with ``reason`` (waiters
        wake; records expire after ``ttl`` seconds); returns how many. Running and
        delayed tasks are left alone."""

    async def dead_letters(
        self, after: tuple[float, str] | None = None, limit: int | None = None
    ) -> list[dict[str, str]]:
        """Dead letters, newest first: ``uuid``, ``reason``, ``raw`` and ``at`` (when
        it was set aside, in seconds, as text).

        :param after: ``(at, uuid)`` of the last letter of the previous page; the page
            starts after it, even when it is gone since (requeued or deleted).
        :param limit: at most this many. ``None`` reads every dead letter, a read that
            grows with their number: a page of a list (the dashboard's) gives one."""

    async def dead_count(self) -> int:
        """How many dead letters there are (one read, whatever their number)."""

    async def requeue_dead(self, uuid: str) -> RequeueResult:
        """Queue a dead letter again, as new; nothing else is ever requeued this way."""

    async def delete_dead(self, uuid: str) -> bool:
        """Forget a dead letter (its record stays until it expires or is purged)."""

    async def stats(self) -> BackendStats: ...

    async def ping(self) -> bool: ...

    async def migrate_keys(self) -> tuple[int, list[str]]:
        """Move the app's keys from an older version's names to this one's: how many
        moved, and those left because their new name was taken."""


class StorageBackend(Protocol):
    """What the storage needs: a task record's writes (enqueue, a claim's end, cancel,
    abort, progress), its reads (one, many, a page of an index), the waits on it, and
    the feed of status changes."""

    async def enqueue(
        self, uuid: str, record: dict[str, str], priority: int
    ) -> float | Literal[False] | str:
        """Write the record and queue the task, atomically, in one round trip; returns
        when it was written (seconds, on the backend's clock), which the record keeps as
        its ``created_at``. A uuid that already has a record is left alone (``False``):
        an enqueue retried after a lost reply adds nothing. A ``unique_key`` field held
        by another task (queued or running, or within its ``unique_for`` ms) writes
        nothing and returns the uuid of that task.

        Record fields the backend reads: ``queue`` (absent: the default queue);
        ``due_in`` (milliseconds: the task waits that long, then is queued; stored as
        ``eta``, a time of the backend's clock); ``expires_in`` (milliseconds: a task
        not claimed by then never runs; stored as ``expires``); ``ttl`` (seconds the
        record of a task that expired is kept)."""

    async def enqueue_many(self, items: list[tuple[str, dict[str, str], int]]) -> int:
        """:meth:`enqueue` for ``(uuid, record, priority)`` items, all in one atomic
        write; returns how many were new."""

    async def finish(
        self,
        uuid: str,
        token: str,
        fields: dict[str, str],
        ttl: float | None,
        delay: float | None,
    ) -> bool:
        """Write a task's new state and end its lease, atomically, if ``token`` is its
        current claim (else ``False``, nothing written). With ``delay`` the task waits
        in the backend, then is queued again (retry); without, it is final: waiters
        wake and the record expires after ``ttl`` seconds. Repeating a finish that was
        written returns ``True`` and changes nothing."""

    async def dead_letter(self, uuid: str, token: str, reason: str, raw: str) -> bool:
        """Set a claimed task aside with its reason (status ``error``); never retried."""

    async def get(self, uuid: str) -> dict[str, str] | None: ...

    async def get_many(
        self, uuids: Sequence[str], fields: Sequence[str] | None = None
    ) -> list[dict[str, str] | None]:
        """:meth:`get` of each of ``uuids``, in one round trip; ``None`` where none.
        ``fields``: only those (each record then holds its ``uuid`` and those of the
        fields it has; one with none of them counts as none), for a reader that
        looks at a few fields of many records (a search)."""

    async def get_all(self, limit: int) -> list[dict[str, str]]: ...

    async def index_page(
        self,
        index: str,
        after: tuple[float, str] | None,
        limit: int,
        fields: Sequence[str] | None = None,
    ) -> list[tuple[str, float, dict[str, str] | None]]:
        """Up to ``limit`` entries of an index after the cursor ``after`` (``(score,
        uuid)`` of the last entry of the previous page): ``(uuid, score, record)``, the
        record ``None`` when it is gone (expired; such entries are dropped from the
        index), and only its ``fields`` when given (as :meth:`get_many`). Never a scan
        of the keyspace.

        ``index`` is ``final:<status>`` or ``name:<task name>`` (finished tasks, newest
        first, scored by the time they ended in ms), ``queue:<name>`` (queue order),
        ``running`` (by lease deadline), ``scheduled`` (by due time, in ms) or
        ``workflows`` (every workflow, newest first, by when it started)."""

    async def wait_done(
        self, uuid: str, timeout: float, marked: bool = False
    ) -> dict[str, str] | bool:
        """Block until the task is final, or ``timeout`` passes (``False``). A final
        task gives its record when the backend has it at hand, else ``True``.
        ``marked``: the task is already known to be waited for (sent with ``waited``,
        or by an earlier call of this wait), so a backend that signals ends only to
        waited-for tasks need not mark it again."""

    async def update(
        self,
        uuid: str,
        fields: dict[str, str],
        ttl: float | None = None,
        token: str | None = None,
    ) -> bool:
        """Set fields on an existing record (with ``token``: only while that claim is
        current). The only status it sets is ``cancel``, for a queued or delayed task,
        which it also unqueues; other statuses are the claim's to write."""

    async def abort(self, uuid: str, reason: str, ttl: float | None) -> AbortResult:
        """Stop ``uuid``: a queued or waiting task ends ``cancel`` with ``reason`` now
        (its record kept ``ttl`` seconds); a running one is marked, and its worker
        learns it from :meth:`BrokerBackend.extend`."""

    async def progress(self, uuid: str, data: str, token: str = "") -> bool:
        """Store a running task's progress (JSON text) and append it to the task's
        events; ``False`` if the task is not running, or (with ``token``) runs under
        another claim than ``token``."""

    async def watch_start(self, uuid: str) -> str:
        """Mark ``uuid`` watched, so its end is appended to its events too; returns its
        status (``""``: no such task). A final status means it ended already."""

    async def events(self, uuid: str, after: str, timeout: float) -> list[tuple[str, str, str]]:
        """The task's events after the id ``after`` (``"0"``: from the first), as
        ``(id, kind, data)`` with kind ``progress`` (data: the progress JSON) or
        ``final`` (data: the final record as JSON); blocks up to ``timeout`` seconds
        (no polling) while there are none."""

    async def workflow_nodes(self, workflow_id: str) -> dict[str, str]:
        """A workflow's stored tree: path -> node JSON (see
        :meth:`BrokerBackend.start_workflow`), plus its bookkeeping fields
        (``<path>#left``, ``<path>#<i>`` results, ``<path>#ended``); empty once it
        expired."""

    def set_feed(self, sink: ChangeSink | None, events_max: int) -> None:
        """Where the status changes this process makes go: each call that changes a
        status awaits ``sink`` with its changes (as :class:`StatusChange`, in order,
        after they are durable), and ``events_max`` > 0 also appends them to the app's
        capped event stream (about that many kept), in the same atomic step. With no
        sink and no stream, nothing is collected: the calls cost what they did."""

    async def audit_add(self, entry: str, keep: int) -> None:
        """Put ``entry`` (JSON text: one action taken through the dashboard) first on
        the app's audit log and keep the newest ``keep`` (1 or more), in one round trip.
        A key of another type where the log goes (written by hand) is replaced, never
        an error: an audit entry must not be lost to garbage."""

    async def audit_read(self, count: int) -> list[str]:
        """The newest ``count`` entries of the audit log, newest first (``[]`` for none,
        or for a key of another type where the log goes)."""

    async def status_events(
        self, after: str, timeout: float, count: int = 100
    ) -> list[StatusChange]:
        """Changes on the app's event stream after the id ``after`` (``"0"``: from the
        oldest kept), at most ``count``; blocks up to ``timeout`` seconds (no polling)
        while there are none. Each carries its stream ``id``."""

    async def status_events_last(self) -> str:
        """The id of the latest entry of the event stream (``"0-0"``: none), where
        reading "from now on" starts."""

    async def history_add(self, buckets: dict[int, dict[str, int]]) -> float:
        """Add figures of finished tasks to the app's history, in one atomic step:
        ``buckets`` maps a bucket (its first second, a multiple of
        :data:`qtasks_core.history.BUCKET`, on the server's clock) to the counts to add
        to its figures (see :mod:`qtasks_core.history`). The history keeps what was
        added in the last day and a bit (``keys.HISTORY_TTL``) and forgets the rest; a
        history key overwritten with another type is replaced, never an error.

        :return: the backend's clock now, in seconds since the epoch: where the caller
            puts its next buckets.
        """

    async def history_read(self, since: float, step: int = 10) -> dict[int, dict[str, int]]:
        """The history's buckets from ``since`` (seconds since the epoch) to now: bucket
        -> figure -> count, in a fixed number of reads whatever the traffic. ``step``
        is 10 (the buckets as added) or 60 (added up per minute: an hour is 60 of
        them)."""

    async def delete_finished(self) -> int: ...

    async def flush_all(self) -> None: ...


class ConfigBackend(Protocol):
    """What the global config needs: namespaces of text values, and each worker's
    heartbeat (its status, kept while it beats)."""

    async def config_set(self, name: str, key: str, value: str) -> None: ...

    async def config_get(self, name: str, key: str) -> str | None: ...

    async def config_delete(self, name: str, key: str) -> bool:
        """Remove ``key`` of namespace ``name``; whether it was there."""

    async def config_get_all(self, name: str) -> dict[str, str]: ...

    async def config_get_match(self, name: str, pattern: str) -> dict[str, str]: ...

    async def set_status(self, worker_id: str, status: str, ttl: float) -> None: ...

    async def clear_status(self, worker_id: str) -> None: ...


class SchedulerBackend(Protocol):
    """What the schedules need: each schedule's cursor moved atomically with its tick's
    enqueue, and the definitions added at run time. Those are stored by
    :meth:`save_schedule` in the config namespace ``schedules``
    (:data:`~qtasks_core.keys.SCHEDULES_NAMESPACE`), and read back with
    :meth:`ConfigBackend.config_get_all`."""

    async def cursor(self, schedule: str) -> dict[str, str]:
        """The cursor of ``schedule``: ``next`` (the tick it waits for) and ``last``
        (the last tick fired), in ms; empty for a schedule never run."""

    async def tick(
        self,
        schedule: str,
        expected: int | None,
        new_next: int,
        fired: int | None,
        task: tuple[str, dict[str, str], int] | None,
        definition: str | None = None,
    ) -> tuple[Ticked, int]:
        """Move the cursor of ``schedule`` from ``expected`` (``None``: a new cursor) to
        ``new_next`` and, with ``fired``, enqueue ``task`` (``uuid, record, priority``,
        as :meth:`StorageBackend.enqueue`) as that tick's, in one atomic step. Nothing
        is written if the cursor is elsewhere (another scheduler moved it) or ``fired``
        is not due by the backend's clock (``"lost"``), or if ``definition`` (a schedule
        added at run time, as the scheduler read it; ``None``: declared in code) is no
        longer the one :meth:`save_schedule` stored (``"stale"``). Returns what it did,
        and the backend's time (ms)."""

    async def save_schedule(self, name: str, definition: str | None) -> bool:
        """Store the ``definition`` (JSON text) of a schedule added at run time, or with
        ``None`` remove it, and wake every :meth:`wait_schedules`, in one atomic step.
        A changed definition drops the cursor's next tick (it starts at its first tick
        after now); the same one stored again changes nothing. Returns whether the
        name had a definition before."""

    async def wait_schedules(self, after: str, timeout: float) -> str:
        """Block (no polling) until the schedules added at run time change after the
        change ``after`` (``"0"``: before any), or ``timeout`` passes; returns the
        latest change's id (``after`` when none came). Every waiter wakes."""


class Backend(
    LifecycleBackend,
    BrokerBackend,
    StorageBackend,
    ConfigBackend,
    SchedulerBackend,
    Protocol,
):
    """What an engine implements: every component's part of the contract, held by the
    contract suite in ``tests/backends/`` that runs on every backend and transport."""
