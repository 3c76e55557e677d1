"""Prometheus metrics for QTasks workers, with no dependency besides ``qtasks-core``.

Installed, it is loaded by every QTasks app through the ``qtasks.plugins`` entry point
``prometheus`` (this module's :data:`plugin`); a worker then serves, on
``http://127.0.0.1:9464/metrics`` by default:

- ``qtasks_tasks_total{task,status}``: task runs finished, by final status;
- ``qtasks_task_duration_seconds{task}``: a histogram of run times;
- ``qtasks_tasks_running``: tasks running now in this process;
- ``qtasks_queue_depth``: tasks waiting in the queue, read from the backend per scrape;
- ``qtasks_backend_up``: whether that read succeeded.

To use it without installing the entry point: ``app.add_plugin(PrometheusPlugin(port=0))``.
"""

from __future__ import annotations

from .metrics import DEFAULT_BUCKETS, Metrics
from .plugin import DEFAULT_HOST, DEFAULT_PORT, PrometheusPlugin
from .server import MetricsServer

__version__ = "0.1.0"

#: The instance the entry point names: one per process, shared by its workers.
plugin = PrometheusPlugin()

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Metrics",
    "MetricsServer",
    "PrometheusPlugin",
    "__version__",
    "plugin",
]
