"""Per-call overhead of firing a QTasks trigger through ``qtasks_hooks.PluginManager``.

Run from the repository root::

    python bench/hook_overhead.py                  # full run, ~15 s
    python bench/hook_overhead.py --quick          # CI smoke, well under 3 s
    python bench/hook_overhead.py --json out.json  # also write the results as JSON

The script benchmarks the ``qtasks_hooks`` of the checkout it lives in (the repository
root is put first on ``sys.path``), with its own two-trigger spec class, so it does not
depend on ``qtasks_hooks.specs``:

- ``bench_return``: ``@hookspec(firstresult=True)`` + ``@replaces_value("model")``;
- ``bench_notify``: a plain ``@hookspec`` (no return).

Every case is timed with ``time.perf_counter_ns`` over ``n`` back-to-back calls, ``n``
auto-sized so one measurement takes about 0.2 s (``--quick``: about 10 ms); the best of
5 repeats (``--quick``: 3) is reported as ns per call. Each call passes the same two
keyword arguments (``component=..., model=...``); the hook caller (``pm.hook.<name>``)
is looked up once, outside the timed loop. The ``for`` loop's own cost is included in
every row, the plain-call baseline too, so the ratio column compares like with like.
The async cases run inside one ``asyncio.run`` and ``await`` every call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass
from inspect import isawaitable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pluggy

from qtasks_hooks import PluginManager, hookimpl, hookspec, replaces_value

FULL_TARGET_NS = 200_000_000  # ~0.2 s per measurement
QUICK_TARGET_NS = 10_000_000  # ~10 ms per measurement
FULL_REPEATS = 5
QUICK_REPEATS = 3


# ---------------------------------------------------------------------------
# The benchmark's own specs and impls
# ---------------------------------------------------------------------------


class BenchSpecs:
    """Two triggers shaped like the real ones: ``(component, model)``."""

    @hookspec(firstresult=True)
    @replaces_value("model")
    def bench_return(self, component: object, model: object) -> object | None:
        """Returns a new ``model`` or ``None`` to keep it."""

    @hookspec
    def bench_notify(self, component: object, model: object) -> None:
        """Returns nothing; every impl runs."""


class Model:
    """A stand-in for a pydantic model: small, and a fresh one per replacement."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        self.value = value


class KeepPlugin:
    """Implements both triggers and keeps the value (returns ``None``)."""

    @hookimpl
    def bench_return(self, component: object, model: object) -> None:
        return None

    @hookimpl
    def bench_notify(self, component: object, model: object) -> None:
        return None


class ReplacePlugin:
    """Replaces ``model`` with a new object on every call."""

    @hookimpl
    def bench_return(self, component: object, model: object) -> Model:
        return Model(1)


class AsyncKeepPlugin:
    """An ``async def`` impl of the return trigger that keeps the value."""

    @hookimpl
    async def bench_return(self, component: object, model: object) -> None:
        return None


def make_manager(plugin_type: type, count: int) -> PluginManager:
    """A manager with the bench specs and ``count`` instances of ``plugin_type``."""
    manager = PluginManager()
    manager.add_hookspecs(BenchSpecs)
    for _ in range(count):
        manager.register(plugin_type())
    return manager


def plain_call(component: object, model: object) -> None:
    """The baseline: a plain Python function with the trigger's two kwargs."""


async def trivial_coroutine(component: object, model: object) -> None:
    """The async baseline: a coroutine that returns immediately."""


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

SyncTimer = Callable[[int], int]
AsyncTimer = Callable[[int], Coroutine[Any, Any, int]]


def sync_timer(call: Callable[..., object]) -> SyncTimer:
    """A function running ``call(component=..., model=...)`` ``n`` times; returns ns."""
    component = object()
    model = Model()

    def run(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            call(component=component, model=model)
        return time.perf_counter_ns() - start

    return run


def async_timer(call: Callable[..., Awaitable[object]]) -> AsyncTimer:
    """Like :func:`sync_timer`, awaiting every call inside the running loop."""
    component = object()
    model = Model()

    async def run(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            await call(component=component, model=model)
        return time.perf_counter_ns() - start

    return run


def calibrated(n: int, elapsed_ns: int, target_ns: int) -> int | None:
    """Calibration step: the final ``n`` once a run is long enough, else ``None``.

    A run of at least a tenth of the target is long enough to scale ``n`` to the target;
    until then the caller grows ``n`` tenfold.
    """
    if elapsed_ns < target_ns // 10:
        return None
    return max(1, round(n * target_ns / max(elapsed_ns, 1)))


@dataclass(frozen=True, slots=True)
class Result:
    case: str
    ns_per_call: float
    iterations: int
    repeats: int
    ratio: float = 0.0


def measure(case: str, timer: SyncTimer, target_ns: int, repeats: int) -> Result:
    n = 1
    while (sized := calibrated(n, timer(n), target_ns)) is None:
        n *= 10
    n = sized
    best = min(timer(n) for _ in range(repeats))
    return Result(case, best / n, n, repeats)


async def ameasure(case: str, timer: AsyncTimer, target_ns: int, repeats: int) -> Result:
    n = 1
    while (sized := calibrated(n, await timer(n), target_ns)) is None:
        n *= 10
    n = sized
    best = min([await timer(n) for _ in range(repeats)])
    return Result(case, best / n, n, repeats)


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


def check_sync(manager: PluginManager, *, replaced: bool) -> None:
    """Fail loudly if a case would not measure what its name says."""
    model = Model()
    result = manager.hook.bench_return(component=object(), model=model)
    if replaced and not isinstance(result, Model):
        raise RuntimeError(f"expected a replacement, got {result!r}")
    if not replaced and result is not None:
        raise RuntimeError(f"expected None (keep), got {result!r}")
    if manager.hook.bench_notify(component=object(), model=model) is not None:
        raise RuntimeError("a trigger without a return returned a value")


def sync_cases(target_ns: int, repeats: int) -> list[Result]:
    results = [measure("plain function call", sync_timer(plain_call), target_ns, repeats)]
    for count in (0, 1, 5):
        manager = make_manager(KeepPlugin, count)
        check_sync(manager, replaced=False)
        case = f"no-return trigger, {count} sync impl(s)"
        hook = manager.hook.bench_notify
        results.append(measure(case, sync_timer(hook), target_ns, repeats))
    for count in (0, 1, 5):
        manager = make_manager(KeepPlugin, count)
        check_sync(manager, replaced=False)
        case = f"return trigger, {count} sync impl(s), keep"
        hook = manager.hook.bench_return
        results.append(measure(case, sync_timer(hook), target_ns, repeats))
    for count in (1, 5):
        manager = make_manager(ReplacePlugin, count)
        check_sync(manager, replaced=True)
        case = f"return trigger, {count} sync impl(s), each replaces"
        hook = manager.hook.bench_return
        results.append(measure(case, sync_timer(hook), target_ns, repeats))
    return results


async def async_cases(target_ns: int, repeats: int) -> list[Result]:
    results = [
        await ameasure(
            "await trivial coroutine", async_timer(trivial_coroutine), target_ns, repeats
        )
    ]
    for count in (1, 5):
        manager = make_manager(AsyncKeepPlugin, count)
        hook = manager.hook.bench_return
        pending = hook(component=object(), model=Model())
        if not isawaitable(pending):
            raise RuntimeError(f"expected an awaitable from async impls, got {pending!r}")
        if await pending is not None:
            raise RuntimeError("async keep impls replaced the value")
        case = f"return trigger, {count} async impl(s), keep, awaited"
        results.append(await ameasure(case, async_timer(hook), target_ns, repeats))
    return results


def with_ratios(results: list[Result]) -> list[Result]:
    baseline = results[0].ns_per_call
    return [
        Result(r.case, r.ns_per_call, r.iterations, r.repeats, r.ns_per_call / baseline)
        for r in results
    ]


def markdown_table(results: list[Result]) -> str:
    width = max(len("case"), *(len(r.case) for r in results))
    lines = [
        f"| {'case':<{width}} | ns/call | ratio to plain call |",
        f"|{'-' * (width + 2)}|--------:|--------------------:|",
    ]
    for r in results:
        lines.append(f"| {r.case:<{width}} | {r.ns_per_call:7.1f} | {r.ratio:18.2f}x |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the per-call overhead of firing a QTasks trigger."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="far fewer iterations (CI smoke test; finishes in well under 3 s)",
    )
    parser.add_argument(
        "--json", metavar="PATH", type=Path, help="also write the results as JSON to PATH"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    target_ns = QUICK_TARGET_NS if args.quick else FULL_TARGET_NS
    repeats = QUICK_REPEATS if args.quick else FULL_REPEATS

    started = time.perf_counter()
    results = sync_cases(target_ns, repeats)
    results += asyncio.run(async_cases(target_ns, repeats))
    results = with_ratios(results)
    wall = time.perf_counter() - started

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"pluggy {pluggy.__version__}; best of {repeats}, "
        f"~{target_ns / 1e9:g} s per measurement; total {wall:.1f} s\n"
    )
    print(markdown_table(results))

    if args.json is not None:
        payload = {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "pluggy": pluggy.__version__,
            "quick": args.quick,
            "repeats": repeats,
            "target_seconds_per_measurement": target_ns / 1e9,
            "wall_seconds": round(wall, 3),
            "results": [asdict(r) for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
