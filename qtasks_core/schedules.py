"""Periodic tasks: schedules, and the scheduler every worker runs.

A schedule names a task and when it runs: a cron expression in a time zone (parsed by
cronsim), a fixed interval (``every``), or any object with APScheduler's
``get_next_fire_time(previous, now)`` (duck typed). Its **cursor** lives in the backend
(``schedule:<name>``: the next tick and the last fired). Every worker's scheduler
sleeps until the nearest tick, then asks the backend to move that schedule's cursor
from the tick it saw to the one after, and to enqueue the tick's task with the uuid
``periodic:<name>:<tick ms>``, in one atomic step: however many schedulers race,
exactly one moves the cursor and enqueues; the others see it moved and write nothing.
A scheduler killed at any moment has either done the whole step or none of it.

Ticks that fell while no scheduler ran are handled by the schedule's ``missed``
policy: ``"once"`` (default) runs the latest of them once, ``"each"`` runs every one
(at most ``MAX_CATCH_UP`` per wake), ``"skip"`` runs none (only a tick late by less
than ``GRACE`` seconds, or half the interval if shorter). Times are the backend
server's clock (the cursor step refuses a tick it does not see due), so a worker with
a skewed clock cannot fire early.

Schedules added at run time (``app.add_schedule``) are stored in the backend; each
change also wakes every scheduler at once (on Redis, an entry in the ``schedules``
stream their blocking reads wait on), and it reloads them. The cursor step takes the
definition the scheduler holds and refuses it once it is no longer the stored one, so
a removed (or replaced) schedule enqueues nothing more, even from a scheduler that has
not yet heard of the change.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ._util import dumps, loads
from ._util import fired as _fire
from ._validate import check_priority, check_queue, check_task_name
from .errors import BackendError, TaskOptionError
from .keys import SCHEDULES_NAMESPACE
from .wiring import Wiring

if TYPE_CHECKING:
    from .app import BaseQueueTasks
    from .backends.base import Backend, Ticked
    from .declare import TaskHandle

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("qtasks.schedules")

Missed = Literal["once", "each", "skip"]
#: Ticks fired at most per schedule and wake under ``missed="each"``.
MAX_CATCH_UP = 1000
#: A tick later than this (seconds) counts as missed under ``missed="skip"``.
GRACE = 1.0
#: Longest time between two reloads of the schedules added at run time: a change wakes
#: every scheduler at once; this only bounds a wake-up lost with the backend.
REFRESH = 30.0
#: Longest blocking wait for a change (seconds): a read ends with no change after it.
LISTEN = 20.0
#: The cursor of a schedule with no tick left.
NEVER = 2**62
#: The global-config namespace of the schedules added at run time.
NAMESPACE = SCHEDULES_NAMESPACE


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _moment(ms: int, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=zone)


@dataclass(frozen=True)
class Schedule:
    """When one task runs, and with what. Give one of ``cron``, ``every``, ``trigger``.

    :param name: the schedule's name (its cursor's key): letters, digits, ``_ . -``.
    :param task_name: the task it enqueues.
    :param cron: a cron expression (5 fields, or 6 with seconds last as cronsim takes),
        in ``tz`` (default UTC). On DST change days a daily ``02:30`` runs once.
    :param every: an interval in seconds (or a ``timedelta``; sub-second allowed).
    :param trigger: an object with ``get_next_fire_time(previous, now)`` returning an
        aware ``datetime`` or ``None`` (APScheduler's triggers); code-declared only.
    :param missed: what to do with ticks that fell while nothing ran.
    """

    name: str
    task_name: str
    cron: str | None = None
    tz: str = "UTC"
    every: float | timedelta | None = None
    trigger: Any = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    missed: Missed = "once"

    def __post_init__(self) -> None:
        check_queue(self.name, "schedule name")  # the same rule: it is part of a Redis key
        check_task_name(self.task_name)
        given = [k for k in ("cron", "every", "trigger") if getattr(self, k) is not None]
        if len(given) != 1:
            raise TaskOptionError(
                f"schedule {self.name!r}: give exactly one of cron=, every=, trigger= "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.every is not None:
            every = self.every
            if isinstance(every, timedelta):
                every = every.total_seconds()
            if (
                not isinstance(every, int | float)
                or isinstance(every, bool)
                or not (math.isfinite(every) and every > 0)
            ):
                raise TaskOptionError(
                    f"schedule {self.name!r}: every= must be a number of seconds > 0 or a "
                    f"timedelta, got {self.every!r}"
                )
            if round(every * 1000) < 1:
                raise TaskOptionError(
                    f"schedule {self.name!r}: every={self.every!r} is under a millisecond, "
                    "the finest tick QTasks keeps"
                )
            object.__setattr__(self, "every", float(every))
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime.now(self.zone))
            except (CronSimError, TypeError) as exc:
                raise TaskOptionError(
                    f"schedule {self.name!r}: cron={self.cron!r} is not a cron expression "
                    f"({exc}); e.g. '*/5 * * * *' for every five minutes"
                ) from None
        if self.trigger is not None and not callable(
            getattr(self.trigger, "get_next_fire_time", None)
        ):
            raise TaskOptionError(
                f"schedule {self.name!r}: trigger= needs a get_next_fire_time(previous, now) "
                "method (an APScheduler trigger), or write cron= / every="
            )
        if self.missed not in ("once", "each", "skip"):
            raise TaskOptionError(
                f"schedule {self.name!r}: missed={self.missed!r}; write 'once' (run the "
                "latest missed tick once), 'each' (run every missed tick) or 'skip'"
            )
        if self.queue is not None:
            check_queue(self.queue)
        if self.priority is not None:
            check_priority(self.priority)
        dumps(list(self.args), what=f"args of schedule {self.name!r}")
        dumps(self.kwargs, what=f"kwargs of schedule {self.name!r}")

    @property
    def zone(self) -> tzinfo:
        if self.tz in ("UTC", "utc"):
            return UTC
        try:
            return ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise TaskOptionError(
                f"schedule {self.name!r}: tz={self.tz!r} is not a time zone name "
                "(e.g. 'Europe/Berlin')"
            ) from None

    def next_after(self, ms: int) -> int | None:
        """The first tick strictly after ``ms`` (epoch ms); ``None``: no more ticks."""
        if isinstance(self.every, float):
            step = round(self.every * 1000)
            return (ms // step + 1) * step  # aligned on the epoch: every scheduler agrees
        zone = self.zone
        after = _moment(ms, zone)
        if self.cron is not None:
            return _ms(next(CronSim(self.cron, after)))
        fire = self.trigger.get_next_fire_time(after, after + timedelta(microseconds=1000))
        if fire is None:
            return None
        tick = _ms(fire)
        # A trigger returning its own 'previous' would stall the cursor.
        return tick if tick > ms else self.next_after(ms + 1)

    def latest_due(self, tick: int, now: int) -> tuple[int, int | None]:
        """The last tick at or before ``now``, from the due ``tick`` on, and the one
        after it (``None``: no more ticks)."""
        if isinstance(self.every, float):
            step = round(self.every * 1000)
            latest = max(tick, now // step * step)
            return latest, latest + step
        # Back from now, not forward from the cursor: a walk from the cursor costs a
        # step per missed tick (a week of per-second cron ticks: 604,800 steps, about
        # a minute of the scheduler's time). The window doubles until it holds a tick,
        # so it ends up at most twice the distance to the latest one, and few ticks
        # are walked in it.
        window = 1000
        while True:
            start = max(tick, now - window)
            first = tick if start == tick else self.next_after(start - 1)
            if first is not None and first <= now:
                break
            window *= 2
        after = self.next_after(first)
        while after is not None and after <= now:
            first, after = after, self.next_after(after)
        return first, after

    def to_json(self) -> str:
        """The definition stored for a schedule added at run time."""
        if self.trigger is not None:
            raise TaskOptionError(
                f"schedule {self.name!r}: a trigger object lives in code, not in Redis; "
                "declare it with @app.periodic(trigger=...) so every worker has it, or "
                "give cron= / every="
            )
        return dumps(
            {
                "task_name": self.task_name,
                "cron": self.cron,
                "tz": self.tz,
                "every": self.every,
                "args": list(self.args),
                "kwargs": self.kwargs,
                "queue": self.queue,
                "priority": self.priority,
                "missed": self.missed,
            },
            what=f"schedule {self.name!r}",
        )

    @classmethod
    def from_json(cls, name: str, text: str) -> Schedule:
        data = loads(text, None)
        if not isinstance(data, dict):
            raise TaskOptionError(f"schedule {name!r}: stored definition is not an object")
        data["args"] = tuple(data.get("args") or ())
        return cls(name=name, **{k: v for k, v in data.items() if v is not None})


@dataclass(slots=True)
class ScheduleState:
    """A schedule as ``app.schedules()`` shows it."""

    schedule: Schedule
    last_run: datetime | None
    next_run: datetime | None
    declared_in_code: bool


class ScheduleStore:
    """The schedules' part of the engine: the definitions added at run time, each
    schedule's cursor and its tick, and the stream of changes that wakes every
    scheduler. The app and the schedulers reach the backend through it alone."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def save(self, name: str, definition: str | None) -> bool:
        """Store (or with ``None`` remove) a schedule added at run time and wake every
        scheduler; whether one was stored under the name before."""
        return await self.backend.save_schedule(name, definition)

    async def definitions(self) -> dict[str, str]:
        """The schedules added at run time: name -> definition (JSON), as stored."""
        return await self.backend.config_get_all(NAMESPACE)

    async def cursor(self, name: str) -> dict[str, str]:
        """A schedule's cursor: ``next`` tick and ``last`` fired (ms, as text)."""
        return await self.backend.cursor(name)

    async def tick(
        self,
        name: str,
        expected: int | None,
        new_next: int,
        fired: int | None,
        task: tuple[str, dict[str, str], int] | None,
        definition: str | None,
    ) -> tuple[Ticked, int]:
        """Move the cursor from ``expected`` to ``new_next`` and write the tick's task,
        as one step (see :meth:`Backend.tick`); what happened and the server's time."""
        return await self.backend.tick(name, expected, new_next, fired, task, definition)

    async def wait_changes(self, after: str, timeout: float) -> str:
        """Block until a schedule added at run time changes after the id ``after`` (or
        ``timeout``); the latest change's id."""
        return await self.backend.wait_schedules(after, timeout)


class Scheduler:
    """Fires the ticks of an app's schedules; one per worker (any number may run)."""

    def __init__(self, app: BaseQueueTasks) -> None:
        self.app = app
        #: Backend clock minus this process's, in ms, from the last reply.
        self._offset = 0
        #: The schedules added at run time, with their definitions as stored.
        self._runtime: dict[str, tuple[Schedule, str]] = {}
        self._refreshed = -math.inf
        #: The id of the last change to the schedules added at run time it has heard.
        self._seen = "0"

    def _now(self) -> int:
        return int(time.time() * 1000) + self._offset

    async def _refresh(self) -> None:
        if time.monotonic() - self._refreshed < REFRESH:
            return
        self._runtime = await _stored(self.app)
        self._refreshed = time.monotonic()

    def schedules(self) -> dict[str, Schedule]:
        return {**{n: s for n, (s, _) in self._runtime.items()}, **self.app._schedules}

    def _definition(self, name: str) -> str | None:
        """The stored definition a tick of ``name`` must still find (``None``: declared
        in code, which wins over one stored under its name)."""
        if name in self.app._schedules or name not in self._runtime:
            return None
        return self._runtime[name][1]

    async def step(self) -> float:
        """Fire every due tick once; returns seconds until the nearest next tick."""
        await self._refresh()
        nearest: int | None = None
        for schedule in self.schedules().values():
            try:
                upcoming = await self._advance(schedule)
            except BackendError:
                raise
            except Exception:
                # One schedule's broken trigger or plugin must not stop the others.
                log.exception("schedule %r failed; the others go on", schedule.name)
                continue
            if upcoming is not None and (nearest is None or upcoming < nearest):
                nearest = upcoming
        wait = REFRESH if nearest is None else max(0.0, (nearest - self._now()) / 1000)
        return min(wait, REFRESH - (time.monotonic() - self._refreshed), REFRESH)

    async def _advance(self, schedule: Schedule) -> int | None:
        """Fire what is due of ``schedule``; the tick to look at next (ms), or None if
        it has none."""
        cursor = await self.app.schedule_store.cursor(schedule.name)
        expected = int(cursor["next"]) if cursor.get("next", "").isdigit() else None
        if expected is None:
            # A new schedule starts with its first tick after now: no catching up on a
            # past it never had.
            first = schedule.next_after(self._now())
            if first is None:
                return None
            await self._move(schedule, None, first, None)
            return first
        now = self._now()
        if expected > now:
            return expected
        following = schedule.next_after(expected)
        if following is None or following > now:
            # One tick due: the usual case.
            fired = self._unless_skipped(schedule, expected, following, now)
            moved = await self._move(schedule, expected, following or NEVER, fired)
            # Lost to another scheduler, or not due by the server's clock: look again
            # at once (the cursor, or the corrected clock, says what next).
            return following if moved else expected
        # Several ticks due: they fell while no scheduler ran. The hook sees at most
        # MAX_CATCH_UP of them; the walk to the latest is not capped.
        missed = [expected]
        probe: int | None = following
        while probe is not None and probe <= now and len(missed) < MAX_CATCH_UP:
            missed.append(probe)
            probe = schedule.next_after(probe)
        if schedule.missed == "each":
            chosen: int | None = expected
            for tick in missed:
                after = schedule.next_after(tick)
                if not await self._move(schedule, tick, after or NEVER, tick):
                    return expected
                if tick == expected:
                    await self._missed(schedule, missed, expected)
                if after is None:
                    return None
            return after
        latest, after = schedule.latest_due(missed[-1], now)
        chosen = self._unless_skipped(schedule, latest, after, now)
        if not await self._move(schedule, expected, after or NEVER, chosen):
            return expected
        await self._missed(schedule, missed, chosen)
        return after

    def _unless_skipped(
        self, schedule: Schedule, tick: int, following: int | None, now: int
    ) -> int | None:
        """``tick``, or None if ``missed="skip"`` and it is late past the grace (at
        most half the interval)."""
        if schedule.missed != "skip":
            return tick
        grace = GRACE * 1000
        if following is not None:
            grace = min(grace, (following - tick) / 2)
        return None if now - tick > grace else tick

    async def _missed(self, schedule: Schedule, missed: list[int], fired: int | None) -> None:
        zone = schedule.zone
        await _fire(
            self.app.pm.hook.schedule_missed(
                scheduler=self,
                schedule=schedule,
                missed=[_moment(t, zone) for t in missed],
                fired=None if fired is None else _moment(fired, zone),
            )
        )

    async def _move(
        self, schedule: Schedule, expected: int | None, new_next: int, fired: int | None
    ) -> bool:
        prepared = None
        if fired is not None:
            # Through the triggers of every new task; its uuid is the tick's own, so
            # the same tick can never make two tasks.
            producer = self.app.producer
            options = {"queue": schedule.queue} if schedule.queue else {}
            call = await producer.call(
                schedule.task_name, schedule.args, dict(schedule.kwargs), schedule.priority, options
            )
            prepared = await producer.prepare(call, f"periodic:{schedule.name}:{fired}")
        task = (
            None if prepared is None else (prepared.uuid, prepared.record, prepared.model.priority)
        )
        ticked, server_now = await self.app.schedule_store.tick(
            schedule.name, expected, new_next, fired, task, self._definition(schedule.name)
        )
        self._offset = server_now - int(time.time() * 1000)
        moved = ticked == "moved"
        if ticked == "stale":
            # Removed or replaced since it was loaded (its wake-up may still be on the
            # way): reload before the next step, which then looks at once.
            self._refreshed = -math.inf
        if moved and prepared is not None and fired is not None:
            # Only the scheduler whose tick moved the cursor wrote the task.
            await self.app.producer.announce(prepared.uuid, prepared.model)
            await _fire(
                self.app.pm.hook.schedule_fired(
                    scheduler=self,
                    schedule=schedule,
                    tick=_moment(fired, schedule.zone),
                    uuid=prepared.uuid,
                )
            )
        return moved

    async def run(
        self, stopping: asyncio.Event, on_error: Callable[[BaseException], Awaitable[float]]
    ) -> None:
        """Fire ticks until ``stopping`` is set; ``on_error`` (an outage) says how long
        to wait before the next try.

        Between steps it sleeps until the nearest tick, or until a change to the
        schedules added at run time wakes it: one blocking read of the backend stays
        open across steps (:meth:`Backend.wait_schedules`), so a change is heard at
        once and a tick costs no new read."""
        stop = asyncio.ensure_future(stopping.wait())
        listening: asyncio.Task[str] | None = None
        listen_again = 0.0
        try:
            while not stopping.is_set():
                try:
                    wait = await self.step()
                except BackendError as exc:
                    wait = await on_error(exc)
                if listening is None and time.monotonic() >= listen_again:
                    listening = asyncio.ensure_future(
                        self.app.schedule_store.wait_changes(self._seen, LISTEN)
                    )
                waits: set[asyncio.Future[Any]] = {stop}
                if listening is not None:
                    waits.add(listening)
                await asyncio.wait(
                    waits, timeout=max(wait, 0.001), return_when=asyncio.FIRST_COMPLETED
                )
                if listening is not None and listening.done():
                    listen_again = await self._heard(listening, on_error)
                    listening = None
        finally:
            stop.cancel()
            if listening is not None:
                listening.cancel()
                await asyncio.wait({listening}, timeout=5)

    async def _heard(
        self, listening: asyncio.Task[str], on_error: Callable[[BaseException], Awaitable[float]]
    ) -> float:
        """Take what a blocking read returned; when (monotonic) to read again."""
        if listening.cancelled():
            return time.monotonic() + 1.0  # cut short by its connection's closing
        try:
            seen = listening.result()
        except BackendError as exc:
            # A failing read backs off (it must not spin) while the ticks go on; the
            # periodic reload covers what it misses meanwhile.
            return time.monotonic() + await on_error(exc)
        except Exception:
            log.exception("waiting for changes to the schedules failed; retrying in %ss", REFRESH)
            return time.monotonic() + REFRESH
        if seen != self._seen:
            self._seen = seen
            self._refreshed = -math.inf  # reloaded by the next step, at once
        return 0.0


async def load_runtime(app: ScheduleOps) -> dict[str, Schedule]:
    """The schedules added at run time (``app.add_schedule``), from the backend."""
    return {name: schedule for name, (schedule, _) in (await _stored(app)).items()}


async def _stored(app: ScheduleOps) -> dict[str, tuple[Schedule, str]]:
    """The schedules added at run time, each with its definition as stored."""
    stored = await app.schedule_store.definitions()
    out = {}
    for name, text in stored.items():
        try:
            out[name] = (Schedule.from_json(name, text), text)
        except (TaskOptionError, TypeError) as exc:
            log.error("schedule %r is stored malformed and is not run: %s", name, exc)
    return out


class ScheduleOps(Wiring):
    """The app's periodic tasks: declared in code, added and removed at run time, and
    listed with their last and next runs (every operation has its sync twin on
    ``qtasks_core.QueueTasks``)."""

    @property
    def schedule_store(self) -> ScheduleStore:
        """The schedules' part of the engine (definitions, cursors, ticks)."""
        if self._schedule_store is None:
            self._schedule_store = ScheduleStore(self.backend)
        return self._schedule_store

    def periodic(
        self,
        *,
        cron: str | None = None,
        tz: str = "UTC",
        every: float | timedelta | None = None,
        trigger: Any = None,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        name: str | None = None,
        missed: str = "once",
        **task_options: Any,
    ) -> Callable[[F], TaskHandle]:
        """Register a task that runs on a schedule: ``@app.periodic(cron="*/5 * * * *",
        tz="Europe/Berlin")`` or ``@app.periodic(every=30)`` (see
        :class:`~qtasks_core.schedules.Schedule`). Every worker runs the scheduler;
        each tick is enqueued exactly once however many run. ``task_options`` go to
        ``@app.task``; ``name`` names the schedule (default: the task's name)."""

        when = {
            "cron": cron, "tz": tz, "every": every, "queue": queue, "priority": priority,
            "args": tuple(args), "kwargs": dict(kwargs or {}), "missed": missed,
        }  # fmt: skip

        def register(f: F) -> TaskHandle:
            handle = self.task(f, **task_options) if task_options else self.task(f)
            schedule = Schedule(
                name or handle.name,
                handle.name,
                trigger=trigger,
                **when,  # type: ignore[arg-type]
            )
            if schedule.name in self._schedules:
                raise TaskOptionError(f"two schedules are named {schedule.name!r}: give name=")
            self._schedules[schedule.name] = schedule
            return handle

        return register

    async def add_schedule_async(
        self,
        name: str,
        task_name: str,
        *,
        cron: str | None = None,
        tz: str = "UTC",
        every: float | timedelta | None = None,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        missed: str = "once",
    ) -> Schedule:
        """Add (or replace) a schedule at run time, kept in the backend: every worker's
        scheduler is woken through the backend and takes it up at once (its first tick
        is the first after now). A trigger object lives in code: declare it with
        :meth:`periodic`."""
        if name in self._schedules:
            raise TaskOptionError(
                f"schedule {name!r} is declared in code (@app.periodic): choose another name"
            )
        schedule = Schedule(
            name, task_name, cron=cron, tz=tz, every=every, queue=queue, priority=priority,
            args=tuple(args), kwargs=dict(kwargs or {}), missed=missed,  # type: ignore[arg-type]
        )  # fmt: skip
        await self.start_async()
        await self.schedule_store.save(name, schedule.to_json())
        return schedule

    async def remove_schedule_async(self, name: str) -> bool:
        """Remove a schedule added at run time; ``False`` if there was none. No tick of
        it is enqueued once this returns, on any worker (the backend refuses a tick of
        a definition no longer stored), and every scheduler is woken to drop it. A
        schedule added again under the name starts at its first tick after now."""
        if name in self._schedules:
            raise TaskOptionError(
                f"schedule {name!r} is declared in code (@app.periodic): remove it there"
            )
        await self.start_async()
        return await self.schedule_store.save(name, None)

    async def schedules_async(self) -> list[ScheduleState]:
        """Every schedule, declared in code or added at run time, with its last and
        next run."""
        await self.start_async()
        runtime = await load_runtime(self)
        out = []
        for schedule in {**runtime, **self._schedules}.values():
            cursor = await self.schedule_store.cursor(schedule.name)
            zone = schedule.zone

            def at(value: str | None, zone: Any = zone) -> datetime | None:
                if not value or not value.isdigit() or int(value) >= 2**62:
                    return None
                return datetime.fromtimestamp(int(value) / 1000, tz=zone)

            next_ms = cursor.get("next")
            if not next_ms:
                first = schedule.next_after(int(datetime.now(UTC).timestamp() * 1000))
                next_ms = None if first is None else str(first)
            out.append(
                ScheduleState(
                    schedule=schedule,
                    last_run=at(cursor.get("last")),
                    next_run=at(next_ms),
                    declared_in_code=schedule.name in self._schedules,
                )
            )
        return sorted(out, key=lambda s: s.schedule.name)
