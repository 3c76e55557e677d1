"""Every Redis key QTasks uses, in one place, readable with ``redis-cli``.

All keys of one app share the prefix ``qtasks:{<app name>}:``: the braces are a Redis
Cluster hash tag, so every key of one app lives in one slot and each function's keys
are on one node (apps spread over a cluster's shards). QTasks before 0.2 wrote
``qtasks:<app name>:``; ``qtasks migrate-keys`` moves such keys (see
:meth:`Keys.legacy`).

:data:`FAMILIES` lists every kind of key after the prefix, its type and what it holds:
the one list. Python builds its keys with :class:`Keys`; the Redis functions with
the ``key_<family>(prefix, ...)`` builders that ``backends/_lua.py`` writes from this
list in front of ``lua/lib.lua``. ``tests/backends/test_key_names.py`` holds both to it.
"""

from __future__ import annotations

import re
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
#: Seconds of 10 s buckets in one ``history:<start>`` hash, and of 1-minute ones in one
#: ``history:m:<start>`` hash: a period is read from a few small hashes. Each is kept a
#: day and a bit after its last write, so the history is bounded and the last 24 hours
#: are always there.
HISTORY_SPAN: Final = 300
HISTORY_MINUTES_SPAN: Final = 3600
HISTORY_TTL: Final = 25 * 3600


@dataclass(frozen=True, slots=True)
class KeyFamily:
    """One kind of key of an app.

    :param name: its name in code: ``key_<name>`` in the Redis functions, and the
        :class:`Keys` member of the same name, if Python builds it.
    :param pattern: the key after the app's prefix; ``<part>`` stands for what varies
        (``task:<uuid>``).
    :param type: the Redis type it holds.
    :param holds: what it holds, and why.
    """

    name: str
    pattern: str
    type: str
    holds: str

    @property
    def parts(self) -> tuple[str, ...]:
        """The names of the parts that vary, in order."""
        return tuple(_PART.findall(self.pattern))

    @property
    def segments(self) -> tuple[str, ...]:
        """The fixed text between the parts (``("task:", "")`` for ``task:<uuid>``)."""
        return tuple(_PART.split(self.pattern)[::2])


_PART: Final = re.compile(r"<(\w+)>")

#: Every kind of key of an app, after its prefix.
FAMILIES: Final[tuple[KeyFamily, ...]] = (
    KeyFamily("queue", "queue", "zset",
              "uuid -> priority * 2**40 + sequence (ZPOPMIN = next task), the default queue"),
    KeyFamily("named_queue", "queue:<name>", "zset", "the same, of the named queue <name>"),
    KeyFamily("queues", "queues", "set", "the names of the named queues ever sent to (stats)"),
    KeyFamily("seq", "seq", "string", "the enqueue sequence (FIFO within one priority)"),
    KeyFamily("task", "task:<uuid>", "hash", "the task record (status, task_name, args JSON, …)"),
    KeyFamily("running", "running", "zset",
              "uuid -> lease deadline in ms (a dead worker's lease expires)"),
    KeyFamily("scheduled", "scheduled", "zset",
              "uuid -> due time in ms (retry backoff, delay, ETA, the next rate window)"),
    KeyFamily("wake", "wake", "list", "one token per enqueue; idle workers block on it (BLPOP)"),
    KeyFamily("named_wake", "wakeq:<name>", "list", "the same, for the named queue <name>"),
    KeyFamily("wake_worker", "wake:<worker>", "list", "a token that wakes one worker stopping"),
    KeyFamily("done", "done:<uuid>", "list",
              "a token pushed when a task finishes; waiters block on it"),
    KeyFamily("counts", "counts", "hash", "status -> number of tasks that entered it"),
    KeyFamily("clock", "clock", "string",
              "when a worker last reached Redis (ms); a gap means an outage"),
    KeyFamily("dead", "dead", "zset", "uuid -> time it was set aside (dead letters)"),
    KeyFamily("dead_letter", "dead:<uuid>", "hash", "the dead letter: reason and raw message"),
    KeyFamily("worker", "worker:<id>", "string",
              "a live worker's heartbeat (JSON), expires with its lease"),
    KeyFamily("workers", "workers", "zset",
              "worker id -> when its heartbeat expires (ms): who to read"),
    KeyFamily("index_of", "index:<status>", "zset",
              "uuid -> when it ended (ms), per final status: the task list"),
    KeyFamily("index_of_name", "index:name:<task>", "zset", "the same, per task name"),
    KeyFamily("events", "events:<uuid>", "stream",
              "a task's progress and (when watched) its end: app.watch"),
    KeyFamily("workflow", "wf:<id>", "hash",
              "a workflow's tree (path -> node JSON), group counts, results"),
    KeyFamily("workflow_live", "wf:<id>:live", "set", "a workflow's members queued or running"),
    KeyFamily("workflows", "workflows", "zset",
              "workflow id -> when it started (ms): the workflows list"),
    KeyFamily("slots", "slots:<task>", "zset",
              "uuid -> lease deadline: the concurrency slots of task name <task> held now"),
    KeyFamily("parked", "parked:<task>", "zset",
              "uuid -> when parked: tasks of <task> waiting for a concurrency slot"),
    KeyFamily("rate", "rate:<task>:<window>", "string",
              "tasks of <task> claimed in rate window <window> (expires after two windows)"),
    KeyFamily("unique", "unique:<key>", "string",
              "the uuid of the task holding unique_key <key>, until it ends (or unique_until)"),
    KeyFamily("config", "config:<name>", "hash",
              "global config values of one namespace (JSON); the namespace ``schedules`` "
              "holds the schedules added at run time"),
    KeyFamily("schedule", "schedule:<name>", "hash",
              "a schedule's cursor: ``next`` tick and ``last`` fired (ms)"),
    KeyFamily("schedule_changes", "schedules", "stream",
              "one entry per change of the schedules added at run time (the last "
              "SCHEDULE_CHANGES_MAX): every scheduler blocks on it (XREAD)"),
    KeyFamily("changes", "changes", "stream",
              "every task's status changes, capped (events_max): uuid, task_name, queue, "
              "previous, status, reason, attempt, worker (the id is its time); app.events()"),
    KeyFamily("history", "history:<start>", "hash",
              "finished tasks of the 5 minutes from <start> (epoch s), as workers report "
              "them: '<10 s bucket>:<figure>' -> count (expires after HISTORY_TTL)"),
    KeyFamily("history_minutes", "history:m:<start>", "hash",
              "the same per minute, of the hour from <start>: '<minute>:<figure>' -> count"),
    KeyFamily("audit", "audit", "list",
              "the dashboard's audit log: one JSON entry per action (who, what, on what, "
              "outcome), newest first, the last few kept"),
    KeyFamily("probe", "probe", "any",
              "written and deleted by the start check of the user's permissions"),
)  # fmt: skip

#: Not a key of its own: ``<key>:never``, beside any key of the app, is never written.
#: EXISTS on it fails while the app's slot migrates between cluster nodes, so a Redis
#: function checks it before its first write (``unsettled`` in ``lua/lib.lua``).
SLOT_PROBE_SUFFIX: Final = ":never"


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names of one app, as :data:`FAMILIES` lists them."""

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

    def history(self, start: str) -> str:
        """The history hash of the 5 minutes from epoch second ``start``."""
        return f"{self.prefix}history:{start}"

    def history_minutes(self, start: str) -> str:
        """The per-minute history hash of the hour from epoch second ``start``."""
        return f"{self.prefix}history:m:{start}"

    @property
    def audit(self) -> str:
        """The dashboard's audit log (a capped list, newest first)."""
        return self.prefix + "audit"

    @property
    def probe(self) -> str:
        """A key the start check writes and deletes."""
        return self.prefix + "probe"


_GLOB_SPECIAL: Final = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def escape_glob(s: str) -> str:
    """``s`` with the glob characters of Redis patterns (``* ? [ ] \\``) escaped, so
    that ``SCAN MATCH escape_glob(prefix) + "*"`` matches only keys under ``prefix``."""
    return s.translate(_GLOB_SPECIAL)
