"""What the backend tests share: running one coroutine, and a new task's record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    """Run one backend call to its end, on a loop of its own."""

    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def record(name: str = "job", priority: int = 0, **extra: str) -> dict[str, str]:
    """A new task's record as the storage writes it (``extra``: more fields)."""
    return {
        "status": "new",
        "task_name": name,
        "priority": str(priority),
        "args": "[]",
        "kwargs": "{}",
        "created_at": f"{time.time():.6f}",
        "updated_at": f"{time.time():.6f}",
        "attempts": "0",
        **extra,
    }
