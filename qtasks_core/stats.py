"""Stats: what an app is doing right now. Fires ``stats_inspect``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._util import fired
from .schemas import InspectStats, WorkerInfo

if TYPE_CHECKING:
    from .app import BaseQueueTasks


class Stats:
    """Runtime figures of an app: queue lengths by priority, tasks by status, workers."""

    def __init__(self, app: BaseQueueTasks) -> None:
        self.app = app

    async def inspect_async(self) -> InspectStats:
        """A snapshot read from the backend."""
        app = self.app
        await app.start_async()
        await fired(app.pm.hook.stats_inspect(stats=self))
        raw = await app.broker.stats()
        return InspectStats(
            app=app.name,
            backend=app.backend.location,
            queued=raw.queued,
            queues=raw.queues,
            scheduled=raw.scheduled,
            running=raw.running,
            dead=raw.dead,
            status_counts=raw.counts,
            workers=[WorkerInfo.model_validate(w) for w in raw.workers],
            tasks=[
                {
                    "name": t.name,
                    "queue": t.queue,
                    "priority": t.priority,
                    "echo": t.echo,
                    "max_time": t.max_time,
                    "retry": t.retry,
                    "tags": list(t.tags),
                    "description": t.description,
                }
                for t in app.tasks.values()
            ],
            plugins=[info.name for info in app.pm.plugin_infos()],
        )

    def inspect(self) -> InspectStats:
        """Sync twin of :meth:`inspect_async`."""
        return self.app._portal.call(self.inspect_async())
