"""Periodic tasks: exactly one enqueue per tick however many schedulers run, missed
ticks by policy, DST, schedules added at run time, as users declare them."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from qtasks_core import QueueTasks, TaskOptionError, TaskSerializationError
from qtasks_core.schedules import Schedule
from qtasks_core.stats import Stats
from qtasks_hooks import hookimpl
from tests.integration.test_cli import cli, executions, runner, start_worker
from tests.support import wait_for

BERLIN = ZoneInfo("Europe/Berlin")


def ticks_of(schedule: Schedule, start: datetime, count: int) -> list[datetime]:
    out, ms = [], int(start.timestamp() * 1000)
    for _ in range(count):
        nxt = schedule.next_after(ms)
        assert nxt is not None
        out.append(datetime.fromtimestamp(nxt / 1000, tz=schedule.zone))
        ms = nxt
    return out


# -- when ---------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [datetime(2026, 3, 28, 12), datetime(2026, 10, 24, 12)])
def test_a_daily_0230_job_runs_once_on_both_dst_change_days(day: datetime) -> None:
    daily = Schedule("nightly", "job", cron="30 2 * * *", tz="Europe/Berlin")
    ticks = ticks_of(daily, day.replace(tzinfo=BERLIN), 3)
    change_day = (day + timedelta(days=1)).date()
    assert [t.date() for t in ticks].count(change_day) == 1, ticks
    assert [t.date() for t in ticks] == [change_day + timedelta(days=i) for i in range(3)]


def test_an_interval_is_aligned_so_every_scheduler_computes_the_same_ticks() -> None:
    beat = Schedule("beat", "job", every=timedelta(milliseconds=250))
    assert beat.next_after(1_000) == 1_250
    assert beat.next_after(1_249) == 1_250
    assert beat.next_after(1_250) == 1_500


def test_an_apscheduler_style_trigger_is_duck_typed() -> None:
    class Hourly:
        def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime:
            base = previous or now
            return base.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)

    schedule = Schedule("hourly", "job", trigger=Hourly())
    start = datetime(2026, 5, 1, 10, 20, tzinfo=UTC)
    assert [t.hour for t in ticks_of(schedule, start, 3)] == [11, 12, 13]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of cron=, every=, trigger="),
        ({"cron": "* * * * *", "every": 5}, "exactly one of"),
        ({"cron": "61 * * * *"}, "is not a cron expression"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "not a time zone name"),
        ({"every": 0}, "every= must be a number of seconds > 0"),
        ({"every": 0.0001}, "under a millisecond"),
        ({"every": 1, "missed": "later"}, "write 'once'"),
        ({"trigger": object()}, "get_next_fire_time"),
        ({"every": 1, "queue": "a b"}, "contains ' '"),
        ({"every": 1, "args": (object(),)}, "cannot be serialized to JSON"),
    ],
)
def test_a_bad_schedule_is_refused_when_declared(options: dict[str, Any], message: str) -> None:
    app = QueueTasks("periodic-bad", redis_url="memory://", load_entry_points=False)
    with pytest.raises((TaskOptionError, TaskSerializationError), match=message):

        @app.periodic(**options)
        def job() -> None: ...


# -- exactly once per tick ---------------------------------------------------------------


def test_three_schedulers_enqueue_each_tick_once(app: QueueTasks) -> None:
    runs: list[float] = []

    @app.periodic(every=0.2)
    def pulse() -> None:
        runs.append(time.time())

    workers = [app.running_worker(concurrency=2) for _ in range(3)]
    for worker in workers:
        worker.__enter__()
    time.sleep(2.1)
    for worker in workers:
        worker.__exit__(None, None, None)
    [state] = app.schedules()
    assert state.last_run is not None
    # One task per tick between the first and the last: no tick twice, none skipped.
    assert 8 <= len(runs) <= 12, runs
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert min(gaps) > 0.1, gaps


@pytest.mark.parametrize("missed", ["once", "each", "skip"])
def test_ticks_missed_while_nothing_ran_follow_the_policy(app: QueueTasks, missed: str) -> None:
    seen: list[str] = []

    @app.periodic(every=0.5, missed=missed, echo=True)
    def pulse(ctx: Any) -> None:
        seen.append(ctx.task_uuid)

    with app.running_worker():
        wait_for(lambda: len(seen) >= 1, timeout=10, what="a first tick")
    stopped_after = int(seen[-1].rsplit(":", 1)[1])
    time.sleep(2.5)  # five ticks fall while no scheduler runs
    # Back 0.35 s after a tick: later than the grace of 'skip' (half the interval).
    time.sleep((0.35 - time.time() % 0.5) % 0.5)
    restarted = int(time.time() * 1000)
    with app.running_worker():
        time.sleep(0.1)
    missed_ticks = list(range(stopped_after + 500, restarted, 500))
    caught_up = [int(u.rsplit(":", 1)[1]) for u in seen[1:]]
    caught_up = [t for t in caught_up if t < restarted]
    want = {"each": missed_ticks, "once": missed_ticks[-1:], "skip": []}[missed]
    assert caught_up == want, (missed, seen)
    assert len(missed_ticks) >= 4
    assert len(seen) == len(set(seen))


def test_schedules_added_at_run_time_are_listed_and_removed(app: QueueTasks) -> None:
    @app.periodic(cron="0 9 * * 1-5", tz="Europe/Berlin", name="weekday-report")
    def report() -> None: ...

    app.add_schedule("cleanup", "report", every=3600, missed="skip")
    with pytest.raises(TaskOptionError, match="declared in code"):
        app.add_schedule("weekday-report", "report", every=5)
    states = {s.schedule.name: s for s in app.schedules()}
    assert set(states) == {"cleanup", "weekday-report"}
    nxt = states["weekday-report"].next_run
    assert nxt is not None and (nxt.hour, nxt.minute, nxt.weekday() < 5) == (9, 0, True)
    assert str(nxt.tzinfo) == "Europe/Berlin"
    assert states["cleanup"].declared_in_code is False
    assert app.remove_schedule("cleanup") is True
    assert app.remove_schedule("cleanup") is False
    assert [s.schedule.name for s in app.schedules()] == ["weekday-report"]


def ticks_and_runs(ledger: list[tuple[float, str]]) -> tuple[list[int], list[float]]:
    """The ticks (ms, from the uuids) and run times (s) of a ledger of runs."""
    return [int(u.rsplit(":", 1)[1]) for _, u in ledger], [at for at, _ in ledger]


def test_a_schedule_added_or_removed_at_run_time_takes_effect_on_every_worker_at_once(
    app: QueueTasks,
) -> None:
    ledger: list[tuple[float, str]] = []  # outside QTasks: (when it ran, its tick's uuid)

    @app.task(echo=True)
    def pulse(ctx: Any) -> None:
        ledger.append((time.time(), ctx.task_uuid))

    with app.running_worker(), app.running_worker():
        time.sleep(1.5)  # both schedulers loaded what was stored, and sleep
        added = time.time()
        app.add_schedule("pulse", "pulse", every=0.5)
        wait_for(lambda: len(ledger) >= 3, timeout=10, what="three ticks")
        first_run = ledger[0][0] - added
        app.remove_schedule("pulse")
        removed = time.time()
        time.sleep(2.5)
    ticks, runs = ticks_and_runs(ledger)
    # Woken through the backend: not at the next reload, 30 s on.
    assert first_run < 3.0, first_run
    # No tick enqueued once the removal returned (the backend refuses it), none run late.
    assert max(ticks) <= removed * 1000, (ticks, removed)
    assert max(runs) < removed + 1.5, (runs, removed)
    assert len(ticks) == len(set(ticks)), "a tick ran twice"


def test_a_failing_wait_for_changes_backs_off_and_the_ticks_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from qtasks_core.errors import BackendUnavailableError
    from qtasks_core.schedules import Scheduler

    app = QueueTasks("periodic-deaf", redis_url="memory://", load_entry_points=False)
    fired: list[datetime] = []

    class Watch:
        @hookimpl
        def schedule_fired(self, tick: datetime) -> None:
            fired.append(tick)

    app.add_plugin(Watch())

    @app.periodic(every=0.2, name="beat")
    def beat() -> None: ...

    tries: list[float] = []

    async def away(after: str, timeout: float) -> str:
        tries.append(time.monotonic())
        raise BackendUnavailableError("Redis is away")

    async def scenario() -> None:
        await app.start_async()
        monkeypatch.setattr(app.backend, "wait_schedules", away)
        stopping = asyncio.Event()

        async def on_error(exc: BaseException) -> float:
            return 1.0

        scheduling = asyncio.create_task(Scheduler(app).run(stopping, on_error))
        await asyncio.sleep(2.5)
        stopping.set()
        await scheduling

    asyncio.run(scenario())
    assert 2 <= len(tries) <= 4, tries  # one try a second, not a spin
    assert len(fired) >= 8, fired  # the scheduler went on firing


# -- as processes --------------------------------------------------------------------------


def test_three_worker_processes_one_killed_run_each_tick_once(sample_env: dict[str, str]) -> None:
    env = {**sample_env, "QTASKS_TEST_PERIODIC": "1"}
    workers: list[subprocess.Popen[str]] = [start_worker(env, "-c", "2") for _ in range(3)]
    try:
        time.sleep(10)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        time.sleep(10)
    finally:
        for worker in workers[1:]:
            worker.send_signal(signal.SIGTERM)
        for worker in workers[1:]:
            worker.communicate(timeout=30)
    runs = executions(sample_env)
    ticks = sorted(int(tag.rsplit(":", 1)[1]) for tag in runs)
    assert len(ticks) >= 15, ticks  # 20 s minus the workers' start-up
    assert {n for n in runs.values()} == {1}, "a tick ran twice"
    # Every tick from the first to the last, the kill included: none lost.
    assert [b - a for a, b in itertools.pairwise(ticks)] == [1000] * (len(ticks) - 1)
    shown = runner.invoke(cli, ["schedules", "-A", "apps.sample:app", "--json"], env=env)
    [row] = json.loads(shown.output)
    assert row["name"] == "beat" and row["when"] == "every 1s" and row["last_run"]
    print(f"\nperiodic: {len(ticks)} ticks in 20 s over 3 workers (one killed), none twice")


def test_two_worker_processes_take_up_and_drop_a_run_time_schedule_within_a_second(
    sample_env: dict[str, str],
) -> None:
    import redis

    app = QueueTasks(
        sample_env["QTASKS_TEST_APP"], redis_url=sample_env["QTASKS_REDIS_URL"],
        load_entry_points=False,
    )  # fmt: skip
    ledger = redis.Redis.from_url(sample_env["QTASKS_REDIS_URL"], decode_responses=True)
    tag = "pulse"
    workers = [start_worker(sample_env, "-c", "2") for _ in range(2)]
    try:
        wait_for(lambda: len(Stats(app).inspect().workers) == 2, timeout=60, what="two workers")
        time.sleep(1.5)  # both schedulers loaded what was stored, and sleep
        added = time.time()
        app.add_schedule("pulse", "noop", every=1, args=(tag,))
        wait_for(lambda: executions(sample_env).get(tag, 0) >= 3, timeout=15, what="3 ticks")
        app.remove_schedule("pulse")
        removed = time.time()
        time.sleep(3)
        ticks = [t.uuid for t in app.list_tasks(task_name="noop", limit=100).tasks]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.communicate(timeout=30)
        app.stop()
    # The sample app's ledger, outside QTasks: execution -> "pid@when it ran".
    ran = [v.split("@") for v in ledger.hgetall(f"{app.name}:ran:{tag}").values()]
    runs = sorted(float(at) for _, at in ran)
    first, last = runs[0] - added, runs[-1] - removed
    print(
        f"\nrun-time schedule over 2 worker processes: first run {first:.2f} s after "
        f"add_schedule, last run {last:+.2f} s from remove_schedule returning, {len(runs)} "
        f"runs in {len({pid for pid, _ in ran})} process(es)"
    )
    assert first < 3.0, first  # woken through Redis: not at the next reload, 30 s on
    assert last < 1.5, last
    # No tick enqueued once the removal returned (the backend refuses it); none twice.
    assert len(ticks) == len(runs), (ticks, runs)
    assert max(int(u.rsplit(":", 1)[1]) for u in ticks) <= removed * 1000, ticks


@pytest.mark.parametrize(("missed", "runs"), [("once", 1), ("skip", 0)])
def test_a_long_outage_runs_once_or_not_at_all(missed: str, runs: int) -> None:
    import asyncio

    from qtasks_core.schedules import Scheduler

    app = QueueTasks("periodic-outage", redis_url="memory://", load_entry_points=False)
    seen: list[int] = []

    class Watch:
        @hookimpl
        def schedule_missed(self, missed: list[datetime], fired: datetime | None) -> None:
            seen.append(len(missed))

    app.add_plugin(Watch())

    @app.periodic(every=1, missed=missed, name="beat")
    def beat() -> None: ...

    async def scenario() -> list[str]:
        await app.start_async()
        # 700 ms past a tick: later than skip's grace (half the interval), so that tick
        # is missed too, and far from the next one (the steps take ms).
        await asyncio.sleep((0.7 - time.time() % 1) % 1)
        now = int(time.time() * 1000) // 1000 * 1000
        await app.backend.tick("beat", None, now - 3_500_000, None, None)  # 3,500 ticks ago
        await Scheduler(app).step()
        await Scheduler(app).step()
        # A second step that crosses a second boundary rightly fires the new tick: only
        # the ticks that were already due when the outage ended are the outage's.
        return [t.uuid for t in await app.storage.get_all() if int(t.uuid.rsplit(":", 1)[1]) <= now]

    enqueued = asyncio.run(scenario())
    assert len(enqueued) == runs, enqueued
    assert seen == [1000]  # the hook once, with at most 1,000 of the missed ticks


@pytest.mark.parametrize("missed", ["once", "skip"])
def test_a_missed_week_of_per_second_cron_ticks_is_caught_up_without_walking_it(
    missed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from qtasks_core.schedules import Schedule, Scheduler

    app = QueueTasks("periodic-week", redis_url="memory://", load_entry_points=False)
    steps: list[int] = []
    next_after = Schedule.next_after

    def counted(self: Schedule, ms: int) -> int | None:
        steps.append(ms)
        return next_after(self, ms)

    monkeypatch.setattr(Schedule, "next_after", counted)

    @app.periodic(cron="* * * * * *", missed=missed, name="beat")
    def beat() -> None: ...

    async def scenario() -> tuple[list[str], float | None]:
        await app.start_async()
        await asyncio.sleep((0.7 - time.time() % 1) % 1)
        now = int(time.time() * 1000) // 1000 * 1000
        week = 7 * 24 * 3600 * 1000
        await app.backend.tick("beat", None, now - week, None, None)
        steps.clear()
        after = await Scheduler(app).step()
        fired = [
            t.uuid for t in await app.storage.get_all() if int(t.uuid.rsplit(":", 1)[1]) <= now
        ]
        return fired, after

    fired, after = asyncio.run(scenario())
    # The hook's 1,000 missed ticks, then the latest found back from now: not a walk
    # over the week's 604,800 ticks (each a cron evaluation; about a minute in all).
    assert len(steps) < 1100, len(steps)
    assert len(fired) == (1 if missed == "once" else 0), fired
    # And the next wake is the next second's tick, not one of the missed week's.
    assert after is not None and 0 <= after <= 1.5, after
