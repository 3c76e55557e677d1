"""The old path of ``qtasks_core.broker``, kept so that code importing from here goes
on working."""

from ..broker import (
    Broker,
    Message,
    task_schema,
)

__all__ = [
    "Broker",
    "Message",
    "task_schema",
]
