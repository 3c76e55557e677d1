"""GlobalConfig: values shared by every process of an app. Fires ``global_config_*``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._util import dumps, fired, lifecycle, loads

if TYPE_CHECKING:
    from qtasks_hooks import PluginManager

    from .backends.base import ConfigBackend


class GlobalConfig:
    """JSON values by namespace and key, in the backend; plus worker liveness."""

    def __init__(self, backend: ConfigBackend, pm: PluginManager) -> None:
        self.backend = backend
        self.pm = pm

    async def start(self) -> None:
        await lifecycle(
            lambda: self.pm.hook.global_config_start(global_config=self), "global_config_start"
        )

    async def stop(self) -> None:
        await lifecycle(
            lambda: self.pm.hook.global_config_stop(global_config=self), "global_config_stop"
        )

    async def set(self, name: str, key: str, value: Any) -> None:
        new = await fired(
            self.pm.hook.global_config_set(global_config=self, name=name, key=key, value=value)
        )
        if new:
            name, key, value = new.get("name", name), new.get("key", key), new.get("value", value)
        await self.backend.config_set(name, key, dumps(value, what=f"config value {key!r}"))

    async def get(self, name: str, key: str) -> Any:
        get = loads(await self.backend.config_get(name, key))
        new = await fired(self.pm.hook.global_config_get(global_config=self, get=get))
        return get if new is None else new

    async def get_all(self, name: str) -> dict[str, Any]:
        get = {k: loads(v) for k, v in (await self.backend.config_get_all(name)).items()}
        new = await fired(self.pm.hook.global_config_get_all(global_config=self, get=get))
        return get if new is None else dict(new)

    async def get_match(self, name: str, pattern: str) -> dict[str, Any]:
        raw = await self.backend.config_get_match(name, pattern)
        get = {k: loads(v) for k, v in raw.items()}
        new = await fired(self.pm.hook.global_config_get_match(global_config=self, get=get))
        return get if new is None else dict(new)

    async def set_status(self, name: str, status: dict[str, Any], ttl: float) -> None:
        """Write a worker's liveness record; it expires unless renewed within ``ttl``."""
        await fired(
            self.pm.hook.global_config_set_status(global_config=self, name=name, status=status)
        )
        await self.backend.set_status(name, dumps(status, what="worker status"), ttl)

    async def clear_status(self, name: str) -> None:
        """Remove a worker's liveness record (it stopped)."""
        await self.backend.clear_status(name)
