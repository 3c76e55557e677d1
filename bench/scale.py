"""Scale curves: how the cost of QTasks, the raw LPUSH/BRPOP loop, Huey and SAQ grows
with the work. One command, one local Redis server, every system in its ``run.py`` venv::

    python bench/scale.py                 # the full run (about 20 min on 2 cores)
    python bench/scale.py --quick         # scaled down, for development (a few minutes)
    python bench/scale.py --systems qtasks,raw
    python bench/scale.py --from-json bench/results/scale.json   # tables and chart only

Curves (each system's driver is ``bench/systems/scale_<name>.py``; their docstrings say
how each writes its backlog and orders its queue):

1. **Depth**: with 10^3, 10^4, 10^5 and 10^6 tasks already queued (the backlog written
   cheaply: QTasks ``add_tasks_async``, the raw loop its pipelined ``LPUSH``; Huey and
   SAQ have no batch enqueue, so a redis-py pipeline writes what their enqueue writes),
   with no worker running:
   *enqueue/s*: ``--enqueue-n`` single enqueues, each awaited;
   *p50*: round trips of a fresh no-op task. Every system here would make the probe
   wait behind the backlog or have its worker drain the backlog (QTasks orders by
   priority, but its one worker would drain the backlog after the probe), so the
   probe runs on a separate queue with a worker of its own while the backlog sits in
   the main one: the figure is what a deep queue costs the rest of the server;
   *claim/s*: the system's own worker started on the backlog: from its 200th task
   done to the 200+``--claim-n``-th.
   Redis's ``used_memory`` is printed at each size.
2. **Worker processes**: ``run.py``'s e2e workload (N no-op tasks enqueued one at a time
   by one producer while the workers consume) with 1, 2 and 4 processes of each
   system's own worker CLI. On 2 cores the processes share the CPU with Redis and the
   producer, and one producer can bound the figure (its enqueue seconds are in the JSON).
3. **Records** (QTasks): ``--records`` tasks run to success, then ``app.list_tasks``
   (first page, ``status='success'``, ``task_name='noop'``) and the dashboard's
   overview and task-list pages (``qtasks_core.web.create_app`` through httpx's
   ``ASGITransport``, in a venv with the ``web`` extra), each a median of
   ``--requests`` requests after two warm-ups.
4. **Missed ticks** (QTasks): a schedule every second whose cursor is set a week back
   (604,800 due ticks, as if no scheduler ran for a week), then ``Scheduler.step``
   until it has caught up or ``--tick-budget`` seconds pass: ticks fired, time taken,
   whether it caught up, per ``missed`` policy, and for a cron schedule.

Writes ``bench/results/scale.json``, ``scale.md`` and ``scale.png`` (``scale-quick.*``
with ``--quick``); the chart is drawn by this file run in ``run.py``'s ``_harness`` venv
(``--chart JSON PNG``), skipped with a message if matplotlib cannot be installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402  (run.py's venvs and server; it does nothing when imported)

#: (row, venv, driver module)
SYSTEMS: list[tuple[str, str, str]] = [
    ("qtasks", "qtasks", "scale_qtasks"),
    ("raw LPUSH/BRPOP", "raw", "scale_raw"),
    ("huey", "huey", "scale_huey"),
    ("saq", "saq", "scale_saq"),
]
#: The dashboard needs the ``web`` extra, which run.py's QTasks venv does not install.
WEB_VENV = "qtasks_web"
WEB_SPEC = ["-e", f"{run.REPO}[web]", "httpx"]

#: Targets, as ratios to the smallest size (and the pages' absolute bar).
ENQUEUE_MIN = 0.8
CLAIM_MIN = 0.8
P50_MAX = 1.25
PAGE_MAX_MS = 100.0

FULL = {
    "sizes": [1_000, 10_000, 100_000, 1_000_000],
    "enqueue_n": 2000,
    "claim_n": 2000,
    "probe_samples": 200,
    "probe_budget": 10.0,
    "processes": [1, 2, 4],
    "n": 4000,
    "records": 100_000,
    "requests": 15,
    "tick_budget": 10.0,
}
QUICK = {
    "sizes": [1_000, 10_000, 100_000],
    "enqueue_n": 500,
    "claim_n": 500,
    "probe_samples": 50,
    "probe_budget": 3.0,
    "processes": [1, 2, 4],
    "n": 1000,
    "records": 10_000,
    "requests": 5,
    "tick_budget": 3.0,
}
QUICK_NOTE = (
    "QUICK RUN (--quick): 10^3..10^5 queued, 500 enqueues and claims, 50 probes, e2e N=1000, "
    "10^4 records, 5 requests, a day (not a week) missed by the cron schedule, 3 s tick "
    "budget: for development, not for comparison"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def driver_argv(python: Path, module: str, part: str, url: str, settings: dict[str, Any]) -> list:
    return [
        str(python),
        str(run.SYSTEMS_DIR / f"{module}.py"),
        "--redis-url",
        url,
        "--part",
        part,
        "--label",
        f"scale-{module}-{part}",
        "--sizes",
        ",".join(map(str, settings["sizes"])),
        "--enqueue-n",
        str(settings["enqueue_n"]),
        "--claim-n",
        str(settings["claim_n"]),
        "--probe-samples",
        str(settings["probe_samples"]),
        "--probe-budget",
        str(settings["probe_budget"]),
        "--processes",
        ",".join(map(str, settings["processes"])),
        "--n",
        str(settings["n"]),
        "--records",
        str(settings["records"]),
        "--requests",
        str(settings["requests"]),
        "--tick-budget",
        str(settings["tick_budget"]),
        "--log-dir",
        str(run.LOGS),
        *(["--quick"] if settings["quick"] else []),
    ]


def run_part(python: Path, module: str, part: str, url: str, settings: dict[str, Any]) -> dict:
    """One driver run: its JSON line, or an error naming its log."""
    stderr_path = run.LOGS / f"scale-{module}-{part}.driver.log"
    began = time.perf_counter()
    env = dict(os.environ, BENCH_REDIS_URL=url, BENCH_VARIANT="default")
    with stderr_path.open("w") as err:
        try:
            proc = subprocess.run(
                driver_argv(python, module, part, url, settings),
                cwd=run.SYSTEMS_DIR,
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=settings["part_timeout"],
            )
            stdout = proc.stdout
        except subprocess.TimeoutExpired:
            stdout = ""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            out: dict[str, Any] = json.loads(line)
            out["wall_seconds"] = time.perf_counter() - began
            return out
    tail = "\n".join(stderr_path.read_text(errors="replace").splitlines()[-6:])
    return {"error": f"no result (see {stderr_path}):\n{tail}"}


def announce(row: str, part: str, out: dict[str, Any]) -> None:
    """A progress line per part (and Redis's memory at each size)."""
    if "error" in out:
        log(f"{row:<16} {part:<8} ERROR {out['error'].splitlines()[0]}")
        return
    result = out["result"]
    if part == "depth":
        for p in result["points"]:
            log(
                f"{row:<16} depth {p['size']:>9,} queued: used_memory "
                f"{p['used_memory'] / 2**20:7.1f} MiB, prefill {p['prefill_per_second']:8,.0f}/s, "
                f"enqueue {p['enqueue_per_second']:6,.0f}/s, "
                f"claim {p['claim_per_second']:6,.0f}/s, "
                f"p50 {p['p50_ms']:6.2f} ms"
            )
    elif part == "workers":
        for p in result["points"]:
            log(f"{row:<16} workers {p['processes']}: e2e {p['per_second']:6,.0f}/s")
    else:
        log(f"{row:<16} {part} done ({out['wall_seconds']:.0f}s)")


# -- the report -----------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def times(value: float | None, base: float | None) -> str:
    return "-" if value is None or not base else f"{value / base:.2f}x"


def depth_table(runs: dict[str, Any]) -> list[str]:
    lines = [
        "| system | queued | used_memory MiB | prefill/s | enqueue/s | x | claim/s | x "
        "| p50 ms | x | probes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row, parts in runs.items():
        points = parts.get("depth", {}).get("result", {}).get("points", [])
        if not points:
            continue
        first = points[0]
        for p in points:
            lines.append(
                f"| {row} | {p['size']:,} | {p['used_memory'] / 2**20:,.1f} "
                f"| {fmt(p['prefill_per_second'])} "
                f"| {fmt(p['enqueue_per_second'])} "
                f"| {times(p['enqueue_per_second'], first['enqueue_per_second'])} "
                f"| {fmt(p['claim_per_second'])} "
                f"| {times(p['claim_per_second'], first['claim_per_second'])} "
                f"| {fmt(p['p50_ms'], 2)} | {times(p['p50_ms'], first['p50_ms'])} "
                f"| {p['probe_samples']} |"
            )
    return lines


def depth_targets(runs: dict[str, Any]) -> list[str]:
    lines = [
        f"| system | largest / smallest size | enqueue ≥ {ENQUEUE_MIN}x | claim ≥ {CLAIM_MIN}x "
        f"| p50 ≤ {P50_MAX}x |",
        "|---|---|---|---|---|",
    ]
    for row, parts in runs.items():
        points = parts.get("depth", {}).get("result", {}).get("points", [])
        if len(points) < 2:
            continue
        a, b = points[0], points[-1]

        def check(key: str, low: float | None, high: float | None, a: dict = a, b: dict = b) -> str:
            r = b[key] / a[key]
            ok = (low is None or r >= low) and (high is None or r <= high)
            return f"{r:.2f}x {'met' if ok else 'NOT met'}"

        lines.append(
            f"| {row} | {b['size']:,} / {a['size']:,} "
            f"| {check('enqueue_per_second', ENQUEUE_MIN, None)} "
            f"| {check('claim_per_second', CLAIM_MIN, None)} "
            f"| {check('p50_ms', None, P50_MAX)} |"
        )
    return lines


def workers_table(runs: dict[str, Any]) -> list[str]:
    lines = [
        "| system | worker processes | e2e tasks/s | x of 1 | producer busy | worker |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row, parts in runs.items():
        result = parts.get("workers", {}).get("result", {})
        points = result.get("points", [])
        for p in points:
            busy = p["enqueue_seconds"] / p["seconds"]
            lines.append(
                f"| {row} | {p['processes']} | {fmt(p['per_second'])} "
                f"| {times(p['per_second'], points[0]['per_second'])} | {busy:.0%} "
                f"| `{result.get('worker', '')}` |"
            )
    return lines


def records_table(out: dict[str, Any]) -> list[str]:
    result = out.get("result")
    if not result:
        return [f"Not measured: {out.get('error', 'not run')}"]
    lines = [
        f"{result['records']:,} tasks run to success ({result['finished']:,} counted; made in "
        f"{result['make_seconds']:.0f} s; Redis used_memory "
        f"{result['used_memory'] / 2**20:,.0f} MiB); medians of {result['requests']} "
        "requests after two warm-ups:",
        "",
        f"| read | median ms | min-max ms | under {PAGE_MAX_MS:.0f} ms |",
        "|---|---:|---:|---|",
    ]
    for label, t in {**result["reads"], **result["pages"]}.items():
        ok = "yes" if t["median_ms"] < PAGE_MAX_MS else "NO"
        lines.append(
            f"| {label} | {t['median_ms']:.1f} | {t['min_ms']:.1f}-{t['max_ms']:.1f} | {ok} |"
        )
    if result.get("skipped"):
        lines += ["", result["skipped"]]
    return lines


def ticks_table(out: dict[str, Any]) -> list[str]:
    result = out.get("result")
    if not result:
        return [f"Not measured: {out.get('error', 'not run')}"]
    lines = [
        "| schedule | due ticks | fired | steps | seconds | caught up | est. to catch up "
        "| behind after, s | a step after, ms |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for label, c in result["cases"].items():
        estimate = c["estimated_catch_up_seconds"]
        lines.append(
            f"| {label} | {c['due_ticks']:,} | {c['fired']:,} | {c['steps']} "
            f"| {c['seconds']:.2f} | {'yes' if c['caught_up'] else 'no'} "
            f"| {fmt(estimate, 1)} s | {c['cursor_behind_seconds']:.1f} "
            f"| {c['next_step_ms']:.1f} |"
        )
    lines += [
        "",
        "The schedule's cursor is set `due ticks` seconds back, then `Scheduler.step` runs "
        f"until nothing is due (`caught up`) or {result.get('budget', '?')} s have passed. "
        "`fired`: tasks enqueued; `seconds`: the steps' time; `behind after`: how far the "
        "cursor still was behind the server's clock; `est. to catch up`: the steps' time "
        "plus that gap at the pace the cursor moved; `a step after`: one more step. Under "
        f"missed='each' a step fires at most {result['max_catch_up']:,} ticks (MAX_CATCH_UP) "
        "and the next step goes on at once.",
    ]
    return lines


def report_text(payload: dict[str, Any]) -> str:
    runs = payload["runs"]
    settings = payload["settings"]
    head = [
        f"Run {payload['when']} on {payload['machine']['platform']}, "
        f"{payload['machine']['cpus']} CPUs, Python {payload['machine']['python']}; "
        f"{payload['server']['name']} {payload['server']['version']}; QTasks "
        f"{payload['qtasks_revision']}; {payload['wall_seconds'] / 60:.1f} min.",
    ]
    if settings["quick"]:
        head += ["", f"**{QUICK_NOTE}.**"]
    sections = [
        "\n".join(head),
        "## Depth: tasks already queued\n\n"
        f"{settings['enqueue_n']:,} single enqueues, {settings['claim_n']:,} claims by the "
        f"system's worker, up to {settings['probe_samples']} probe round trips (at most "
        f"{settings['probe_budget']:g} s) at each size; `x` is the ratio to the smallest "
        "size. The probe runs on a separate queue with a worker of its own (see the notes).\n\n"
        + "\n".join(depth_table(runs))
        + "\n\n"
        + "\n".join(depth_targets(runs)),
        "## Worker processes\n\n"
        f"e2e: {settings['n']:,} no-op tasks enqueued one at a time by one producer while the "
        "workers consume. On 2 cores the worker processes share the CPU with Redis and the "
        "producer; `producer busy` is the share of the time the producer spent enqueueing "
        "(near 100%: the producer, not the workers, set the pace).\n\n"
        + "\n".join(workers_table(runs)),
        "## Finished records (QTasks)\n\n"
        + "\n".join(records_table(runs.get("qtasks", {}).get("records", {}))),
        "## A missed week of every-second ticks (QTasks)\n\n"
        + "\n".join(ticks_table(runs.get("qtasks", {}).get("ticks", {}))),
    ]
    notes = ["## Notes", ""]
    for row, parts in runs.items():
        depth = parts.get("depth", {}).get("result")
        if depth:
            notes.append(
                f"- **{row}**: backlog: {depth['prefill']}; order: {depth['probe']}; worker "
                f"`{depth['worker']}`, probe worker `{depth['probe_worker']}`."
            )
        for part, out in parts.items():
            if "error" in out:
                notes.append(f"- **{row}** {part}: {out['error'].splitlines()[0]}")
    return "\n\n".join(sections) + "\n\n" + "\n".join(notes) + "\n"


def report(payload: dict[str, Any], out: Path, args: argparse.Namespace) -> int:
    text = report_text(payload)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text("# Scale curves\n\n" + text)
    log(f"wrote {out} and {md}")
    if not args.no_chart:
        python, error = run.ensure_venv(
            run.HARNESS_VENV, run.HARNESS_SPEC, args.python, not args.no_install
        )
        if error:
            log(f"no chart: matplotlib is not installable here ({error.splitlines()[0]})")
        else:
            png = out.with_suffix(".png")
            code = subprocess.call([str(python), __file__, "--chart", str(out), str(png)])
            log(f"wrote {png}" if code == 0 else "no chart: the chart step failed")
    failed = [
        f"{row} {part}"
        for row, parts in payload["runs"].items()
        for part, o in parts.items()
        if "error" in o
    ]
    return 1 if failed else 0


# -- the chart (run in the harness venv) ------------------------------------------------------


def draw(source: Path, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    payload = json.loads(source.read_text())
    runs = payload["runs"]
    panels = [
        ("enqueue_per_second", "single enqueues/s vs tasks queued (higher is better)"),
        ("claim_per_second", "claims/s by one worker vs tasks queued (higher is better)"),
        ("p50_ms", "probe round-trip p50, ms, vs tasks queued (lower is better)"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    for ax, (key, title) in zip(axes.flat, panels, strict=False):
        for row, parts in runs.items():
            points = parts.get("depth", {}).get("result", {}).get("points", [])
            if points:
                style = {"color": "#d62728", "linewidth": 2.5} if row == "qtasks" else {}
                ax.plot(
                    [p["size"] for p in points], [p[key] for p in points], "o-", label=row, **style
                )
        ax.set_xscale("log")
        ax.set_title(title, fontsize=11)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=9)
    ax = axes.flat[3]
    for row, parts in runs.items():
        points = parts.get("workers", {}).get("result", {}).get("points", [])
        if points:
            style = {"color": "#d62728", "linewidth": 2.5} if row == "qtasks" else {}
            ax.plot(
                [p["processes"] for p in points],
                [p["per_second"] for p in points],
                "o-",
                label=row,
                **style,
            )
    ax.set_title("e2e tasks/s vs worker processes (one producer; 2 cores)", fontsize=11)
    ax.set_xticks(payload["settings"]["processes"])
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=9)
    quick = " — QUICK RUN (scaled down)" if payload["settings"]["quick"] else ""
    fig.suptitle(
        f"Scale curves, QTasks {payload['qtasks_revision']} — {payload['server']['name']} "
        f"{payload['server']['version']}, {payload['machine']['cpus']} CPUs — "
        f"{payload['when']}{quick}",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=100)


# -- the run ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="scaled down, for development")
    parser.add_argument(
        "--systems", default="", help="comma-separated rows or venvs (qtasks,raw,huey,saq)"
    )
    parser.add_argument(
        "--sizes",
        default="",
        help="comma-separated backlog sizes of the depth curve (default 10^3..10^6; "
        "--quick: 10^3..10^5), to scale a slow machine's run down",
    )
    parser.add_argument("--no-install", action="store_true", help="use existing venvs only")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the venvs")
    parser.add_argument("--part-timeout", type=float, default=1200.0, help="seconds per driver run")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    parser.add_argument("--from-json", type=Path, metavar="PATH", help="run nothing: report PATH")
    parser.add_argument(
        "--chart", nargs=2, type=Path, metavar=("JSON", "PNG"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.chart:
        draw(*args.chart)
        return 0
    if args.from_json:
        return report(json.loads(args.from_json.read_text()), args.out or args.from_json, args)
    started = time.perf_counter()
    settings: dict[str, Any] = {**(QUICK if args.quick else FULL), "quick": args.quick}
    settings["part_timeout"] = args.part_timeout
    if args.sizes:
        settings["sizes"] = sorted(int(size) for size in args.sizes.split(",") if size)
    wanted = {w.strip() for w in args.systems.split(",") if w.strip()}
    systems = [s for s in SYSTEMS if not wanted or s[0] in wanted or s[1] in wanted]
    if not systems:
        raise SystemExit(f"--systems {args.systems!r} names none of {[s[1] for s in SYSTEMS]}")
    run.LOGS.mkdir(parents=True, exist_ok=True)
    specs = {**run.VENV_SPECS, WEB_VENV: WEB_SPEC}
    pythons: dict[str, Path] = {}
    errors: dict[str, str] = {}
    venvs = [s[1] for s in systems] + ([WEB_VENV] if any(s[1] == "qtasks" for s in systems) else [])
    for venv in venvs:
        python, error = run.ensure_venv(venv, specs[venv], args.python, not args.no_install)
        if error:
            log(f"skipping {venv}: {error}")
            errors[venv] = error
        else:
            pythons[venv] = python
    if settings["quick"]:
        log(QUICK_NOTE)

    runs: dict[str, dict[str, Any]] = {}
    binary = run.find_server(pythons.get("qtasks"))
    with run.redis_server(binary) as (url, server):
        log(f"{server['name']} {server['version']} at {url} ({binary})")
        for row, venv, module in systems:
            runs[row] = {}
            parts = [("depth", venv), ("workers", venv)]
            if venv == "qtasks":
                parts += [("records", WEB_VENV), ("ticks", venv)]
            for part, part_venv in parts:
                if part_venv not in pythons:
                    runs[row][part] = {"error": f"not run: {errors[part_venv]}"}
                    continue
                out = run_part(pythons[part_venv], module, part, url, settings)
                runs[row][part] = out
                announce(row, part, out)

    payload = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "qtasks_revision": run.git_revision(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "server": server,
        "settings": settings,
        "targets": {
            "enqueue_min": ENQUEUE_MIN,
            "claim_min": CLAIM_MIN,
            "p50_max": P50_MAX,
            "page_max_ms": PAGE_MAX_MS,
        },
        "wall_seconds": time.perf_counter() - started,
        "runs": runs,
    }
    stem = "scale-quick" if args.quick else "scale"
    return report(payload, args.out or run.RESULTS / f"{stem}.json", args)


if __name__ == "__main__":
    raise SystemExit(main())
