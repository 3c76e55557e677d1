"""Every Redis key QTasks uses, in one place, readable with ``redis-cli``.

All keys of one app share the prefix ``qtasks:{<app name>}:``: the braces are a Redis
Cluster hash tag, so every key of one app lives in one slot and each function's keys
are on one node (apps spread over a cluster's shards). QTasks before 0.2 wrote
``qtasks:<app name>:``; ``qtasks migrate-keys`` moves such keys (see
:meth:`Keys.legacy`):

====================  =====  =========================================================
key                   type   holds
====================  =====  =========================================================
``queue``             zset   uuid -> priority * 2**40 + sequence (ZPOPMIN = next task),
                             the default queue
``queue:<name>``      zset   the same, of the named queue ``<name>``
``queues``            set    the names of the named queues ever sent to (for stats)
``seq``               str    the enqueue sequence (FIFO within one priority)
``task:<uuid>``       hash   the task record (status, task_name, args JSON, …)
``running``           zset   uuid -> lease deadline in ms (a dead worker's lease expires)
``scheduled``         zset   uuid -> due time in ms (retry backoff, delay, ETA)
``wake``              list   one token per enqueue; idle workers block on it (BLPOP)
``wakeq:<name>``      list   the same, for the named queue ``<name>``
``wake:<worker>``     list   a token that wakes one worker that is stopping
``done:<uuid>``       list   a token pushed when a task finishes; waiters block on it
``counts``            hash   status -> number of tasks that entered it
``clock``             str    when a worker last reached Redis (ms); a gap means an outage
``dead``              zset   uuid -> time it was set aside (dead letters)
``dead:<uuid>``       hash   the dead letter: reason and raw message
``worker:<id>``       str    a live worker's heartbeat (JSON), expires with its lease
``workers``           zset   worker id -> when its heartbeat expires (ms): who to read
``index:<status>``    zset   uuid -> when it ended (ms), per final status: the task list
``index:name:<task>`` zset   the same, per task name
``events:<uuid>``     stream a task's progress and (when watched) its end: app.watch
``wf:<id>``           hash   a workflow's tree (path -> node JSON), group counts, results
``wf:<id>:live``      set    a workflow's members queued or running
``workflows``         zset   workflow id -> when it started (ms): the workflows list
``config:<name>``     hash   global config values of one namespace (JSON); the namespace
                             ``schedules`` holds the schedules added at run time
``schedule:<name>``   hash   a schedule's cursor: ``next`` tick and ``last`` fired (ms)
``schedules``         stream one entry per change of the schedules added at run time
                             (the last ``SCHEDULE_CHANGES_MAX``): every scheduler
                             blocks on it (XREAD), so a change wakes them all at once
``changes``           stream every task's status changes, capped (``events_max``):
                             uuid, task_name, queue, previous, status, reason,
                             attempt, worker (the id is its time); ``app.events()``
====================  =====  =========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Score = priority * PRIORITY_SCALE + sequence: exact in a double for |priority| < 4096.
PRIORITY_SCALE: Final = 2**40
PRIORITY_MIN: Final = -4095
PRIORITY_MAX: Final = 4095
#: The queue of a task sent without one.
DEFAULT_QUEUE: Final = "default"
#: Wake tokens kept at most; more would only wake workers that find nothing to claim.
WAKE_TOKENS_MAX: Final = 1000
#: Entries kept in the ``schedules`` stream: a scheduler reads only what is newer than
#: the last one it saw, so a few are enough.
SCHEDULE_CHANGES_MAX: Final = 16
#: Entries kept in the ``changes`` stream by default (about; trimmed with ``MAXLEN ~``).
EVENTS_MAX: Final = 10_000
#: The global-config namespace (``config:<name>``) of the schedules added at run time.
SCHEDULES_NAMESPACE: Final = "schedules"


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names of one app."""

    prefix: str

    @classmethod
    def for_app(cls, name: str) -> Keys:
        return cls(f"qtasks:{{{name}}}:")

    @classmethod
    def legacy(cls, name: str) -> Keys:
        """The keys QTasks before 0.2 used for the app (no hash tag)."""
        return cls(f"qtasks:{name}:")

    @property
    def queue(self) -> str:
        return self.prefix + "queue"

    @property
    def seq(self) -> str:
        return self.prefix + "seq"

    @property
    def running(self) -> str:
        return self.prefix + "running"

    @property
    def scheduled(self) -> str:
        return self.prefix + "scheduled"

    @property
    def wake(self) -> str:
        return self.prefix + "wake"

    @property
    def counts(self) -> str:
        return self.prefix + "counts"

    @property
    def clock(self) -> str:
        return self.prefix + "clock"

    @property
    def dead(self) -> str:
        return self.prefix + "dead"

    @property
    def queues(self) -> str:
        return self.prefix + "queues"

    @property
    def workers(self) -> str:
        return self.prefix + "workers"

    @property
    def workflows(self) -> str:
        return self.prefix + "workflows"

    def workflow(self, workflow_id: str) -> str:
        return f"{self.prefix}wf:{workflow_id}"

    def index_of(self, status: str) -> str:
        """The finished tasks of final ``status``, by the time they ended."""
        return f"{self.prefix}index:{status}"

    def index_of_name(self, task_name: str) -> str:
        """The finished tasks named ``task_name``, by the time they ended."""
        return f"{self.prefix}index:name:{task_name}"

    def queue_of(self, name: str) -> str:
        """The queue ``name`` (the default queue keeps the key it always had)."""
        return self.queue if name == DEFAULT_QUEUE else f"{self.prefix}queue:{name}"

    def wake_of(self, name: str) -> str:
        return self.wake if name == DEFAULT_QUEUE else f"{self.prefix}wakeq:{name}"

    def task(self, uuid: str) -> str:
        return f"{self.prefix}task:{uuid}"

    def wake_worker(self, worker_id: str) -> str:
        return f"{self.prefix}wake:{worker_id}"

    def events(self, uuid: str) -> str:
        return f"{self.prefix}events:{uuid}"

    def done(self, uuid: str) -> str:
        return f"{self.prefix}done:{uuid}"

    def dead_letter(self, uuid: str) -> str:
        return f"{self.prefix}dead:{uuid}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    def schedule(self, name: str) -> str:
        return f"{self.prefix}schedule:{name}"

    @property
    def schedule_changes(self) -> str:
        """The stream of changes to the schedules added at run time."""
        return self.prefix + "schedules"

    @property
    def changes(self) -> str:
        """The capped stream of every task's status changes (``app.events()``)."""
        return self.prefix + "changes"

    def config(self, name: str) -> str:
        return f"{self.prefix}config:{name}"


_GLOB_SPECIAL: Final = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def escape_glob(s: str) -> str:
    """``s`` with the glob characters of Redis patterns (``* ? [ ] \\``) escaped, so
    that ``SCAN MATCH escape_glob(prefix) + "*"`` matches only keys under ``prefix``."""
    return s.translate(_GLOB_SPECIAL)
