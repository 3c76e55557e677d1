"""The components' old import paths still work: code written against them keeps running."""

from __future__ import annotations

from qtasks_core.broker import Broker, Message
from qtasks_core.global_config import GlobalConfig
from qtasks_core.storage import Storage, UniqueHeld


def test_the_old_paths_import_the_same_objects() -> None:
    from qtasks_core.brokers import Broker as OldBroker
    from qtasks_core.brokers.base import Message as OldMessage
    from qtasks_core.configs import GlobalConfig as OldGlobalConfig
    from qtasks_core.configs.base import GlobalConfig as OldBaseGlobalConfig
    from qtasks_core.storages import Storage as OldStorage
    from qtasks_core.storages.base import UniqueHeld as OldUniqueHeld

    assert (OldBroker, OldMessage) == (Broker, Message)
    assert OldGlobalConfig is OldBaseGlobalConfig is GlobalConfig
    assert (OldStorage, OldUniqueHeld) == (Storage, UniqueHeld)
