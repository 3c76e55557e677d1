"""Result offloading: a result larger than a bound is written to a folder and the
record keeps a reference; every read of a task (``storage_get``, the one read path)
loads it back.

Inert until configured: ``QTASKS_OFFLOAD_DIR`` names the folder (shared by workers and
readers), ``QTASKS_OFFLOAD_OVER`` the size in bytes above which a result is offloaded
(default 1,000).
"""

from __future__ import annotations

import json
import os
import uuid as uuidlib
from pathlib import Path
from typing import Any

from qtasks_hooks import hookimpl

MARK = "qtasks-offload:"


class Offload:
    @hookimpl
    def task_executor_run_task(self, result: Any) -> Any:
        folder = os.environ.get("QTASKS_OFFLOAD_DIR")
        if not folder:
            return None
        text = json.dumps(result)
        if len(text) <= int(os.environ.get("QTASKS_OFFLOAD_OVER", "1000")):
            return None
        name = uuidlib.uuid4().hex
        (Path(folder) / name).write_text(text, encoding="utf-8")
        return MARK + name

    @hookimpl
    def storage_get(self, result: Any) -> Any:
        folder = os.environ.get("QTASKS_OFFLOAD_DIR")
        returning = getattr(result, "returning", None)
        if not folder or not (isinstance(returning, str) and returning.startswith(MARK)):
            return None
        text = (Path(folder) / returning.removeprefix(MARK)).read_text(encoding="utf-8")
        return result.model_copy(update={"returning": json.loads(text)})


plugin = Offload()
