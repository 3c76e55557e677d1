"""Draw bench/results/latest.png from latest.json (run by bench/run.py in the harness venv).

    python bench/chart.py bench/results/latest.json bench/results/latest.png

Six panels of the rows' medians: e2e tasks/s, single enqueues/s, round-trip p50 (ms,
log scale), the seconds for 1,000 tasks of 10 ms at concurrency 100, and the Redis
server's CPU (µs) and commands per e2e task. QTasks is drawn
in its own colour; a missing bar means the row did not run that workload.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PANELS = [
    ("e2e", "e2e tasks/s (higher is better)", False),
    ("enqueue", "single enqueues/s (higher is better)", False),
    ("p50", "round-trip p50, ms (log; lower is better)", True),
    ("sleep", "1000 x 10 ms at concurrency 100, s (lower is better)", False),
    ("redis_us_task", "Redis server CPU per e2e task, µs (lower is better)", False),
    ("cmds_task", "Redis commands per e2e task (lower is better)", False),
]


def main(source: Path, target: Path) -> None:
    data = json.loads(source.read_text())
    rows = data["rows"]
    fig, axes = plt.subplots(3, 2, figsize=(14, 15))
    for ax, (column, title, log) in zip(axes.flat, PANELS, strict=True):
        names = [r["key"] for r in rows if r["medians"].get(column) is not None]
        values = [r["medians"][column] for r in rows if r["medians"].get(column) is not None]
        colors = [
            "#d62728" if n.startswith("qtasks") and "1.7.3" not in n else "#1f77b4" for n in names
        ]
        ax.barh(names[::-1], values[::-1], color=colors[::-1])
        ax.set_title(title, fontsize=11)
        if log:
            ax.set_xscale("log")
        for y, v in enumerate(values[::-1]):
            ax.text(v, y, f" {v:,.1f}" if v < 100 else f" {v:,.0f}", va="center", fontsize=8)
        ax.tick_params(axis="y", labelsize=9)
    when = data.get("when", "")
    server = data.get("server", {})
    fig.suptitle(
        f"QTasks {data.get('qtasks_revision', '')} vs peers — {server.get('name', '')} "
        f"{server.get('version', '')}, {data['machine']['cpus']} CPUs, "
        f"{data['settings']['rounds']} round(s), medians — {when}",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=100)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
