"""The Lua that makes each multi-key step atomic and one round trip: one library of
Redis functions (``FUNCTION LOAD``, called with ``FCALL``).

Each function's body lives in ``lua/<name>.lua`` (its header says which KEYS and ARGV it
takes and what it returns); ``lua/lib.lua`` holds the helpers they share. They are put
together into one library, loaded once per server: the helpers are defined once there,
not on every call as a script's would be (about 9 us of server time per call on the
benchmark machine: a third of an enqueue). The library's name and its functions' names
carry a digest of its text, so workers of two QTasks versions on one Redis each call
their own.

Keys of one task are derived from the app prefix inside the functions (a claim cannot
know its uuids in advance), by the ``key_<family>(prefix, ...)`` builders written here
from ``keys.FAMILIES`` in front of ``lib.lua``: one list of key names for Python and
Lua. All of them share the app's hash slot, so on a Redis Cluster
each call runs on the primary of that slot. While the slot migrates to another shard,
some of its keys are on each side and a function that met a missing one half-way would
stop after writes it cannot undo: every function first checks (``unsettled`` in
``lib.lua``) and, mid-migration, returns ``TRYAGAIN`` before any write; the client waits
and calls again. Redis >= 7.0 or Valkey >= 7.2 (functions).

Functions whose work frees memory or keeps tasks moving (claim, extend, finish,
release, dead letters, cancel) carry ``allow-oom``: under ``maxmemory`` with
``noeviction`` a producer gets a clear error, while workers go on running and finishing
the tasks already queued.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib.resources import files
from typing import Final

from ..keys import (
    FAMILIES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    PRIORITY_SCALE,
    SLOT_PROBE_SUFFIX,
    WAKE_TOKENS_MAX,
    KeyFamily,
)
from ..schemas import ATTEMPT_HISTORY_MAX, TaskStatus

_FOLDER = files(__package__).joinpath("lua")


def _table(names: Iterable[object]) -> str:
    """A Lua set: ``{['a'] = true, ...}``."""
    return "{" + ", ".join(f"[{name!r}] = true" for name in sorted(map(str, names))) + "}"


# Shared with Python: the functions and the components cannot disagree on a limit.
_CONSTANTS: Final = f"""local SCALE = {PRIORITY_SCALE}
local PRIORITY_MIN, PRIORITY_MAX = {PRIORITY_MIN}, {PRIORITY_MAX}
local WAKE_TOKENS_MAX = {WAKE_TOKENS_MAX}
local KNOWN = {_table(TaskStatus)}
local SLOT_PROBE = '{SLOT_PROBE_SUFFIX}'
local HISTORY_MAX = {ATTEMPT_HISTORY_MAX}
"""

#: Each function, and whether it may run when Redis is out of memory.
_FUNCTIONS: Final = {
    "enqueue": False,
    "requeue_dead": False,
    "delete_dead": True,
    "claim": True,
    "extend": True,
    "finish": True,
    "release": True,
    "update": True,
    "dead": True,
    "probe": True,
    "purge": True,
    "tick": False,
    "schedule": False,
    "workflow": False,
    "abort": True,
    "progress": True,
    "watch": True,
    "history": False,
    "records": True,
}


def _read(name: str) -> str:
    return _FOLDER.joinpath(f"{name}.lua").read_text(encoding="utf-8")


def key_builder(family: KeyFamily) -> str:
    """The Lua function that builds the keys of ``family``: ``key_task(prefix, uuid)``
    returns ``prefix .. 'task:' .. uuid``."""
    pieces = ["prefix"]
    for segment, part in zip(family.segments, (*family.parts, None), strict=True):
        if segment:
            pieces.append(f"'{segment}'")
        if part is not None:
            pieces.append(part)
    params = ", ".join(("prefix", *family.parts))
    return f"local function key_{family.name}({params}) return {' .. '.join(pieces)} end\n"


def _key_builders(source: str) -> str:
    """The builders of the key families that ``source`` uses (a builder no function
    calls would be a local of the library for nothing)."""
    return "".join(key_builder(f) for f in FAMILIES if f"key_{f.name}(" in source)


#: How each function is registered: its body runs as a function of its own, so that its
#: replies (``return`` anywhere in it) pass through feed_end, which adds the call's
#: status changes when asked (see ``changed`` in ``lua/lib.lua``).
_CALLBACK: Final = (
    "callback=function(KEYS, ARGV)\nfeed_begin(ARGV)\n"
    "return feed_end((function()\n{guard}{body}\nend)())\nend"
)


_BODIES: Final = {name: _read(name) for name in _FUNCTIONS}
_LIB: Final = _read("lib")
#: The key builders, from keys.py: in front of lib.lua, which uses them too.
_KEYS: Final = _key_builders(_LIB + "".join(_BODIES.values()))
#: The first lines of every function.
_GUARD: Final = "clock = nil\nlocal moving = unsettled(KEYS[1])\nif moving then return moving end\n"
_CODE: Final = _CONSTANTS + _KEYS + _LIB + _GUARD + _CALLBACK + "".join(_BODIES.values())
VERSION: Final = hashlib.sha1(_CODE.encode()).hexdigest()[:12]
LIBRARY_NAME: Final = f"qtasks_{VERSION}"


def function_name(name: str) -> str:
    """The name of function ``name`` (``claim`` …) in this version's library."""
    return f"{LIBRARY_NAME}_{name}"


def _register(name: str, allow_oom: bool) -> str:
    flags = "{'allow-oom'}" if allow_oom else "{}"
    callback = _CALLBACK.format(guard=_GUARD, body=_BODIES[name])
    return (
        f"redis.register_function{{function_name='{function_name(name)}', flags={flags}, "
        f"{callback}}}\n"
    )


def changes_marker(reply: bool, events_max: int) -> str | None:
    """The last argument that asks a function for its status changes: back with the
    reply (``reply``), and/or onto the app's event stream of ``events_max`` entries;
    ``None`` when neither is wanted (no marker: nothing is collected)."""
    if not reply and events_max <= 0:
        return None
    return f"\x01changes:{'r' if reply else '-'}{max(events_max, 0)}"


#: The library's source, for ``FUNCTION LOAD``.
LIBRARY: Final = (
    f"#!lua name={LIBRARY_NAME}\n"
    + _CONSTANTS
    + _KEYS
    + _LIB
    + "".join(_register(name, oom) for name, oom in _FUNCTIONS.items())
)

ENQUEUE: Final = function_name("enqueue")
REQUEUE_DEAD: Final = function_name("requeue_dead")
DELETE_DEAD: Final = function_name("delete_dead")
CLAIM: Final = function_name("claim")
EXTEND: Final = function_name("extend")
FINISH: Final = function_name("finish")
RELEASE: Final = function_name("release")
UPDATE: Final = function_name("update")
DEAD: Final = function_name("dead")
PROBE: Final = function_name("probe")
RECORDS: Final = function_name("records")
PURGE: Final = function_name("purge")
TICK: Final = function_name("tick")
SCHEDULE: Final = function_name("schedule")
WORKFLOW: Final = function_name("workflow")
ABORT: Final = function_name("abort")
PROGRESS: Final = function_name("progress")
WATCH: Final = function_name("watch")
HISTORY: Final = function_name("history")
