"""The dashboard's audit: every action taken through it (requeue, delete, cancel,
abort, retry, purge, the bulk ones, logging in and out, a failed login), who took it,
when, on what, and how it ended.

Each entry is a log line on the ``qtasks.web.audit`` logger and a JSON entry on the
app's audit log in its backend (the newest :data:`AUDIT_KEEP` kept), which the Audit
page lists. Neither ever holds a secret: no token, no cookie, no CSRF field; a form's
fields are named by what they act on.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Final

from ..errors import BackendError

if TYPE_CHECKING:
    from ..app import QueueTasks

__all__ = ["AUDIT_KEEP", "Audit", "Entry"]

#: Entries the backend keeps (the oldest go first).
AUDIT_KEEP: Final = 1000

log = logging.getLogger("qtasks.web.audit")


@dataclass(frozen=True, slots=True)
class Entry:
    """One audited action."""

    #: When, in seconds since the epoch (this process's clock).
    at: float
    #: Who: the name given at login, ``api`` for a script with the token, or the
    #: client's address when the dashboard has no token.
    who: str
    #: The client's address.
    client: str
    #: What: ``requeue``, ``retry``, ``bulk-retry``, ``login``...
    action: str
    #: On what: a task id, a queue, a filter (``""``: nothing in particular).
    target: str
    #: How it ended: ``ok``, a notice key (``not-cancelled``), ``refused (403): …``.
    outcome: str

    @classmethod
    def from_json(cls, text: str) -> Entry | None:
        """The entry stored as ``text``; ``None`` for text that is not one (written
        by hand, or by another version)."""
        try:
            data = json.loads(text)
            return cls(
                float(data["at"]),
                str(data["who"]),
                str(data.get("client", "")),
                str(data["action"]),
                str(data.get("target", "")),
                str(data.get("outcome", "")),
            )
        except (ValueError, TypeError, KeyError):
            return None


class Audit:
    """Writes and reads the audit of one dashboard's app."""

    def __init__(self, app: QueueTasks) -> None:
        self.app = app

    async def record(self, who: str, client: str, action: str, target: str, outcome: str) -> Entry:
        """Log the action and add it to the backend's audit log. A backend that cannot
        take it is logged, never raised: the action is done already, and the log line
        holds the entry."""
        entry = Entry(time.time(), who, client, action, target, outcome)
        log.info(
            "%s (%s) %s %s: %s", who, client, action, target or "-", outcome,
            extra={"audit": asdict(entry)},
        )  # fmt: skip
        try:
            await self.app.start_async()
            await self.app.storage.audit_add(json.dumps(asdict(entry)), AUDIT_KEEP)
        except BackendError as exc:
            log.warning("audit entry not stored in the backend (%s): %s", exc, entry)
        return entry

    async def read(self, count: int) -> list[Entry]:
        """The newest ``count`` entries, newest first (ones that cannot be read are
        left out)."""
        await self.app.start_async()
        texts = await self.app.storage.audit_read(min(count, AUDIT_KEEP))
        return [entry for text in texts if (entry := Entry.from_json(text)) is not None]
