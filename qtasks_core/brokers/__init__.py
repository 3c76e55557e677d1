"""The old home of ``Broker`` (now in ``qtasks_core.broker``), kept so that code
importing it from here goes on working."""

from ..broker import Broker

__all__ = ["Broker"]
