"""The broker."""

from .base import Broker

__all__ = ["Broker"]
