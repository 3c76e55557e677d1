"""Prometheus metrics for QTasks workers, on ``prometheus_client``.

Installed, it is loaded by every QTasks app through the ``qtasks.plugins`` entry point
``prometheus`` (this module's :data:`plugin`); a worker then serves, on
``http://127.0.0.1:9464/metrics`` by default:

- ``qtasks_tasks_total{app,task,queue,status}``: task runs finished, by final status
  (``retry`` counts the retries);
- ``qtasks_task_duration_seconds{app,task,queue}``: a histogram of run times;
- from Redis at scrape time: ``qtasks_queue_depth{app,queue,priority}``,
  ``qtasks_tasks_running``, ``qtasks_tasks_scheduled``, ``qtasks_dead_letters``,
  ``qtasks_workers`` and ``qtasks_backend_up`` (each by ``app``).

With ``PROMETHEUS_MULTIPROC_DIR`` set, the counts of every process of
``qtasks worker --processes N`` are served together by whichever child holds the port.

To use it without installing the entry point: ``app.add_plugin(PrometheusPlugin(port=0))``.
"""

from __future__ import annotations

from .collector import RedisCollector
from .endpoint import Endpoint
from .metrics import DEFAULT_BUCKETS, Metrics
from .plugin import DEFAULT_HOST, DEFAULT_PORT, PrometheusPlugin

__version__ = "0.2.0"

#: The instance the entry point names: one per process, shared by its workers.
plugin = PrometheusPlugin()

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Endpoint",
    "Metrics",
    "PrometheusPlugin",
    "RedisCollector",
    "__version__",
    "plugin",
]
