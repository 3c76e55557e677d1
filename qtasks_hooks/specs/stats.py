"""Triggers fired by the stats component (``stats_*``).

Stats inspects an app (its tasks, workers and configuration) and fires its trigger in the
process that asks for an inspection: a producer process or the ``qtasks`` CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtasks_hooks._markers import hookspec

if TYPE_CHECKING:
    from qtasks_core.stats import Stats


@hookspec
def stats_inspect(stats: Stats) -> None:
    """An inspection snapshot (``InspectStats``) is about to be built.

    Fired in the process that asks for the inspection (a producer or the CLI).

    :param stats: The stats component that builds the snapshot.
    :return: The return value is ignored.
    """
