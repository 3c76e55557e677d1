"""Start-up cost: how long a fresh interpreter takes to show help or import the package.

Run ``python bench/startup.py [--runs 10]`` from the repository root with the
interpreter of the environment to measure. It prints the median wall time of
``python -c pass`` (the floor no command can beat), ``qtasks --help`` (through
``python -m qtasks_core``, so it measures this checkout and not whatever the
installed script points at), ``import qtasks_core`` and
``from qtasks_core import QueueTasks``, plus the number of modules each import
leaves in ``sys.modules``. The bar: ``qtasks --help`` within 0.2 s.

The children write and use bytecode (``__pycache__``, ignored by git) even when
``PYTHONDONTWRITEBYTECODE`` is set, as an installed package has its bytecode compiled:
otherwise every run would pay again for compiling the sources (about 10 ms for
``cli.py`` alone).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES: list[tuple[str, list[str]]] = [
    ("python -c pass", ["-c", "pass"]),
    ("qtasks --help", ["-m", "qtasks_core", "--help"]),
    ("import qtasks_core", ["-c", "import qtasks_core"]),
    ("from qtasks_core import QueueTasks", ["-c", "from qtasks_core import QueueTasks"]),
]

COUNTS: list[tuple[str, str]] = [
    ("import qtasks_core", "import qtasks_core"),
    ("from qtasks_core import QueueTasks", "from qtasks_core import QueueTasks"),
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # This checkout first, ahead of any editable install of another one.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def median_seconds(args: list[str], runs: int) -> float:
    """The median wall time of ``runs`` fresh interpreters running ``args``."""
    env = _env()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def module_count(code: str) -> int:
    """How many modules a fresh interpreter holds after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(len(sys.modules))"],
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    options = parser.parse_args()
    # One untimed run of each warms the page cache and the bytecode files.
    for _, args in CASES:
        median_seconds(args, 1)
    floor = None
    for label, args in CASES:
        seconds = median_seconds(args, options.runs)
        floor = seconds if floor is None else floor
        print(f"{label:<38} {seconds * 1000:7.1f} ms  (+{(seconds - floor) * 1000:6.1f} ms)")
    base = module_count("pass")
    print(f"{'modules after python -c pass':<38} {base:7d}")
    for label, code in COUNTS:
        print(f"{'modules after ' + label:<38} {module_count(code):7d}")


if __name__ == "__main__":
    main()
