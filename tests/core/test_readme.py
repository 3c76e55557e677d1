"""The README's snippets run as written, as a newcomer pastes them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end != -1 else None]
    return re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)


@pytest.mark.parametrize("section", ["Queues, delays, expiry"])
def test_a_section_s_code_runs_as_written(section: str, tmp_path: Path) -> None:
    (code,) = _python_blocks(section)
    # The in-process backend: the snippet needs no server, only QTasks.
    env = {"QTASKS_REDIS_URL": "memory://", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
