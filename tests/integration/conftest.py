"""Fixtures of the process-level tests."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import pythonpath

HERE = Path(__file__).resolve().parent


@pytest.fixture
def sample_env(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    """Environment for processes running tests/integration/apps/sample.py."""
    # A parametrized test's name has brackets, which app names may not hold.
    name = f"cli-{os.getpid()}-{re.sub(r'[^A-Za-z0-9_.-]', '-', request.node.name)[:40]}"
    env = {
        **os.environ,
        "QTASKS_REDIS_URL": redis_url,
        "QTASKS_TEST_APP": name,
        "PYTHONPATH": pythonpath(HERE),
    }
    monkeypatch.chdir(HERE)
    monkeypatch.setenv("QTASKS_REDIS_URL", redis_url)
    monkeypatch.setenv("QTASKS_TEST_APP", name)
    # In-process CLI calls import apps.sample afresh, so each test gets its own app.
    sys.modules.pop("apps.sample", None)
    yield env
    sys.modules.pop("apps.sample", None)
