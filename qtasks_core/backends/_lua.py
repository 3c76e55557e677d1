"""The Lua scripts that make each multi-key step atomic and one round trip.

The scripts live in ``lua/*.lua`` (each file's header says which KEYS and ARGV it
takes and what it returns); ``lua/lib.lua`` holds the helpers they share and is put in
front of each. Keys of one task are derived from the app prefix inside the scripts (a
claim cannot know its uuids in advance); QTasks therefore targets a single Redis/Valkey
node or a primary with replicas, not Redis Cluster.

Scripts whose work frees memory or keeps tasks moving (claim, extend, finish, release,
dead letters, cancel) carry ``flags=allow-oom``: under ``maxmemory`` with
``noeviction`` a producer gets a clear error, while workers go on running and finishing
the tasks already queued.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

_FOLDER = files(__package__).joinpath("lua")
_LIB: Final = _FOLDER.joinpath("lib.lua").read_text(encoding="utf-8")


def _script(name: str, *, allow_oom: bool) -> str:
    body = _FOLDER.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    # The shebang must be the first line; without it a script may not run under OOM.
    shebang = "#!lua flags=allow-oom\n" if allow_oom else "#!lua\n"
    return shebang + _LIB + body


ENQUEUE: Final = _script("enqueue", allow_oom=False)
REQUEUE_DEAD: Final = _script("requeue_dead", allow_oom=False)
CLAIM: Final = _script("claim", allow_oom=True)
EXTEND: Final = _script("extend", allow_oom=True)
FINISH: Final = _script("finish", allow_oom=True)
RELEASE: Final = _script("release", allow_oom=True)
UPDATE: Final = _script("update", allow_oom=True)
DEAD: Final = _script("dead", allow_oom=True)
PROBE: Final = _script("probe", allow_oom=True)
