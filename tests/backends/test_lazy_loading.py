"""Importing QTasks loads no Redis client: redis-py, hiredis and the transports load
when a Redis backend first connects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What only a connection needs.
CONNECTING = (
    "redis",
    "hiredis",
    "qtasks_core.backends._connect",
    "qtasks_core.backends._resp",
    "qtasks_core.backends._sentinel",
    "qtasks_core.backends._cluster",
    "qtasks_core.backends._redispy",
)


def _loaded_after(code: str) -> list[str]:
    """The modules of CONNECTING loaded after running ``code`` in a new interpreter."""
    report = f"import json, sys; print(json.dumps([m for m in {CONNECTING!r} if m in sys.modules]))"
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    loaded: list[str] = json.loads(out.splitlines()[-1])
    return loaded


def test_importing_the_redis_backend_and_making_an_app_loads_no_client() -> None:
    code = (
        "import qtasks_core.backends.redis\n"
        "from qtasks_core import QueueTasks\n"
        "app = QueueTasks('lazy', redis_url='redis+sentinel://h:26379/svc',"
        " load_entry_points=False)\n"
        "app.backend"
    )
    assert _loaded_after(code) == []


def test_a_bad_url_is_refused_without_loading_the_client() -> None:
    code = (
        "from qtasks_core.backends.redis import RedisBackend\n"
        "from qtasks_core.errors import TaskOptionError\n"
        "try:\n"
        "    RedisBackend('redis+cluster://nohost', 'lazy')\n"
        "except TaskOptionError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('accepted')"
    )
    assert _loaded_after(code) == []


def test_the_first_connection_loads_the_client(redis_url: str) -> None:
    code = (
        "import asyncio\n"
        "from qtasks_core.backends.redis import RedisBackend\n"
        f"backend = RedisBackend({redis_url!r}, 'lazy')\n"
        "async def main():\n"
        "    assert await backend.ping()\n"
        "    await backend.close()\n"
        "asyncio.run(main())"
    )
    assert set(_loaded_after(code)) >= {"redis", "qtasks_core.backends._connect"}
