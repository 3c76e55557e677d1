"""Triggers fired by the global config (``global_config_*``).

The global config is the key-value store shared by every process of an app. Its triggers
fire in every process that uses it (producer processes and the ``qtasks worker``
process); ``global_config_set_status`` fires in the worker process only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtasks_hooks._markers import hookspec
from qtasks_hooks._rules import replaces_keys, replaces_value

if TYPE_CHECKING:
    from qtasks_core.global_config import GlobalConfig


# -------------------------------------------------------------------------
# Lifecycle
# -------------------------------------------------------------------------


@hookspec
def global_config_start(global_config: GlobalConfig) -> None:
    """The global config is starting.

    Fired in every process that starts the global config.

    :param global_config: The global config that is starting.
    :return: The return value is ignored.
    """


@hookspec
def global_config_stop(global_config: GlobalConfig) -> None:
    """The global config is stopping.

    Fired in every process that stops the global config.

    :param global_config: The global config that is stopping.
    :return: The return value is ignored.
    """


# -------------------------------------------------------------------------
# Write
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
@replaces_keys("name", "key", "value")
def global_config_set(
    global_config: GlobalConfig, name: str, key: str, value: Any
) -> dict[str, Any] | None:
    """A value is about to be written to the global config.

    Fired in every process that writes a value.

    :param global_config: The global config written to.
    :param name: The name of the group of values the key belongs to.
    :param key: The key, within ``name``, to write.
    :param value: The value to write.
    :return: A dict whose keys, among ``name``, ``key`` and ``value``, replace those
        arguments; an absent or ``None`` key keeps that argument. ``None`` keeps the
        current values.
    """


@hookspec
def global_config_set_status(
    global_config: GlobalConfig, name: str, status: dict[str, Any]
) -> None:
    """A worker's liveness record (its heartbeat) is being written.

    Fired in the worker process, at each heartbeat.

    :param global_config: The global config the record is written to.
    :param name: The worker's id.
    :param status: The liveness record written, field by field.
    :return: The return value is ignored.
    """


# -------------------------------------------------------------------------
# Read
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
@replaces_value("get")
def global_config_get(global_config: GlobalConfig, get: Any) -> Any | None:
    """A value was read from the global config.

    Fired in every process that reads a value.

    :param global_config: The global config read from.
    :param get: The value read, or ``None`` when the key is missing.
    :return: A value that replaces the value read; ``None`` keeps the current value.
    """


@hookspec(firstresult=True)
@replaces_value("get", shape="dict")
def global_config_get_all(
    global_config: GlobalConfig, get: dict[str, Any]
) -> dict[str, Any] | None:
    """All the values of a group were read from the global config.

    Fired in every process that reads a whole group.

    :param global_config: The global config read from.
    :param get: The values read, by key (empty when the group holds nothing).
    :return: A dict that replaces the values read as a whole; ``None`` keeps the current
        value.
    """


@hookspec(firstresult=True)
@replaces_value("get", shape="dict")
def global_config_get_match(
    global_config: GlobalConfig, get: dict[str, Any]
) -> dict[str, Any] | None:
    """The values whose keys match a pattern were read from the global config.

    Fired in every process that searches the global config by pattern.

    :param global_config: The global config read from.
    :param get: The matching values, by key (empty when nothing matched).
    :return: A dict that replaces the values found as a whole; ``None`` keeps the current
        value.
    """
