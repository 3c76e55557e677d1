"""An audit log: one JSON line per status change of every task, written by the process
that made the change (the producer that enqueued, the worker that ran, the CLI that
cancelled).

Inert until configured: it writes only when ``QTASKS_AUDIT_LOG`` names a file.
"""

from __future__ import annotations

import json
import os
from typing import Any

from qtasks_hooks import hookimpl


class AuditLog:
    @hookimpl
    def storage_status_changed(self, storage: Any, change: Any) -> None:
        path = os.environ.get("QTASKS_AUDIT_LOG")
        if not path:
            return
        line = json.dumps({**change.to_dict(), "pid": os.getpid()})
        # One write per line in append mode: lines of several processes never mix.
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


plugin = AuditLog()
