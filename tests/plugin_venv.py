"""Plugin distributions installed by pip into a fresh virtual environment, as users get them.

One environment per test session holds QTasks and every plugin distribution of
``examples/plugins/`` and ``tests/plugins/`` (side by side, as a user who installs
several has them); the modules that test them share it through :func:`plugin_venv`.

Speed (the machine has 2 cores and CI a budget): the environment is made
``--without-pip`` (0.1 s instead of 3 s of ``ensurepip``) and the test runner's own pip
installs into it (``pip --python``). QTasks and the plugins are built by pip from copies
of their source trees and installed ``--no-deps``; their third-party dependencies
(pydantic, redis, prometheus-client, opentelemetry, ...) are then lent by the test
runner's environment through a ``.pth`` line, written after the install so that pip
never sees (or touches) that environment's packages. What matters is tested for real:
the packages are built from their ``pyproject.toml``, installed as files in the new
environment, imported from there, and found through their ``qtasks.plugins`` entry
points; a plain path in a ``.pth`` file does not run the other environment's ``.pth``
files, so its editable QTasks stays out of sight.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "examples" / "plugins"
#: Plugins that users commonly write, each a distribution of its own, that test the
#: contract end to end (each inert until configured, as the plugin guide asks).
TEST_PLUGINS = ROOT / "tests" / "plugins"
#: The plugin distributions the shared environment holds.
DISTRIBUTIONS = (
    "qtasks-prometheus",
    "qtasks-opentelemetry",
    "qtasks-request-id",
    "qtasks-error-reporter",
    "qtasks-admission",
    "qtasks-offload",
    "qtasks-audit-log",
    "qtasks-timing",
    "qtasks-encryption",
)
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")


@dataclass
class Venv:
    """A virtual environment with QTasks and the plugin distributions installed."""

    python: Path
    #: An environment that sees only the venv's packages (and the lent dependencies).
    env: dict[str, str]
    #: A folder outside the source tree, to run from.
    work: Path

    @property
    def root(self) -> Path:
        return self.python.parent.parent

    def run(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python *args`` in the venv, its output captured."""
        return subprocess.run(
            [str(self.python), *args],
            env=env or self.env,
            cwd=cwd or self.work,
            capture_output=True,
            text=True,
            timeout=120,
        )


def clean_environment(bin_dir: Path) -> dict[str, str]:
    """This process's environment without anything that would point Python or QTasks
    elsewhere (``PYTHONPATH`` would put the repository's packages first)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        and not k.startswith(("QTASKS_", "PROMETHEUS_", "OTEL_"))
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def copy_sources(base: Path, distributions: tuple[str, ...]) -> list[Path]:
    """Copies of QTasks' and the plugins' source trees (what their sdists hold), so that
    building never writes ``build/`` or ``*.egg-info`` into the repository."""
    core = base / "src" / "qtasks-core"
    core.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, core / name)
    for package in ("qtasks_core", "qtasks_hooks"):
        shutil.copytree(ROOT / package, core / package, ignore=COPY_IGNORE)
    sources = [core]
    for name in distributions:
        source = PLUGINS / name if (PLUGINS / name).exists() else TEST_PLUGINS / name
        shutil.copytree(source, base / "src" / name, ignore=COPY_IGNORE)
        sources.append(base / "src" / name)
    return sources


def build_venv(base: Path, distributions: tuple[str, ...] = DISTRIBUTIONS) -> Venv:
    """A new venv under ``base`` with QTasks and ``distributions`` installed by pip."""
    sources = copy_sources(base, distributions)
    target = base / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    bin_dir = target / "bin"
    env = clean_environment(bin_dir)
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(bin_dir / "python"),
            "install",
            "--quiet",
            "--no-deps",
            *map(str, sources),
        ],
        env=env,
        cwd=base,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, f"pip install failed:\n{installed.stdout}\n{installed.stderr}"
    site = Path(
        subprocess.run(
            [
                str(bin_dir / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.strip()
    )
    # Appended to sys.path after the venv's own site-packages: the venv's QTasks and
    # plugins come first, the lent dependencies after.
    (site / "_qtasks_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    work = base / "work"
    work.mkdir()
    return Venv(python=bin_dir / "python", env=env, work=work)


_shared: dict[Path, Venv] = {}


def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The session's venv with QTasks and every plugin distribution, built on first use.

    A function rather than a fixture so that each test module wraps it in a fixture of
    its own (no conftest change) while the session builds it once.
    """
    key = tmp_path_factory.getbasetemp()
    if key not in _shared:
        _shared[key] = build_venv(tmp_path_factory.mktemp("plugin-venv"))
    return _shared[key]


@contextlib.contextmanager
def worker_process(
    venv: Venv, app: str, cwd: Path, env: dict[str, str], *args: str, log_name: str = "worker.log"
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``python -m qtasks_core worker -A <app> *args`` in the venv, output to a log file
    in ``venv.work``; SIGTERM (then SIGKILL after 30 s) if still running at the end."""
    log_path = venv.work / log_name
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(venv.python), "-m", "qtasks_core", "worker", "-A", app, *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
