"""One list of key names: keys.FAMILIES. Python builds its keys with Keys, the Redis
functions with the key_<family> builders written from the list; neither spells a key
out anywhere else, and both build each family the same way (checked on the server)."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import pytest
import redis

from qtasks_core.backends import _lua
from qtasks_core.keys import FAMILIES, SLOT_PROBE_SUFFIX, KeyFamily, Keys

LUA = {
    path.name: path.read_text(encoding="utf-8")
    for path in sorted(Path(str(files("qtasks_core.backends").joinpath("lua"))).glob("*.lua"))
}
BY_NAME = {family.name: family for family in FAMILIES}
#: The Keys members that build a family's key with a rule of their own (the default
#: queue keeps the keys it always had), given a name that is not the default.
KEYS_RULES = {"named_queue": "queue_of", "named_wake": "wake_of"}
PREFIX = "qtasks:{app}:"


def _code(source: str) -> str:
    """``source`` without its comments (``--`` to the end of a line, outside strings)."""
    out = []
    for line in source.splitlines():
        quote = None
        for i, char in enumerate(line):
            if quote:
                quote = None if char == quote and line[i - 1] != "\\" else quote
            elif char in "'\"":
                quote = char
            elif line.startswith("--", i):
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def _expected(family: KeyFamily, prefix: str, parts: tuple[str, ...]) -> str:
    pieces = [prefix]
    for segment, part in zip(family.segments, (*parts, ""), strict=True):
        pieces += [segment, part]
    return "".join(pieces)


def _parts(family: KeyFamily) -> tuple[str, ...]:
    return tuple(f"<{part}>" for part in family.parts)


# -- the Lua spells no key -----------------------------------------------------------


#: Every fixed text of a family, which a key spelled out in Lua would hold.
KEY_TEXTS = {s for family in FAMILIES for s in family.segments if s and s != ":"}
#: Text that reads like part of a key name (a workflow member's uuid is
#: ``<workflow id>:<path>``: a lone ``:`` is no key).
KEYLIKE = re.compile(r"^:?\w+:(?:\w+:?)*$|^:\w+$")


@pytest.mark.parametrize("name", sorted(LUA))
def test_the_lua_builds_every_key_through_the_builders(name: str) -> None:
    code = _code(LUA[name])
    concatenated = re.findall(r"'([^']*)'\s*\.\.|\.\.\s*'([^']*)'", code)
    spelled = sorted(
        {text for pair in concatenated for text in pair if text in KEY_TEXTS or KEYLIKE.match(text)}
    )
    assert not spelled, f"{name} spells key names out: {spelled}; use key_<family>(prefix, ...)"
    onto_prefix = re.findall(r"\bprefix\s*\.\.|\.\.\s*prefix\b", code)
    assert not onto_prefix, f"{name} builds a key onto prefix: use key_<family>(prefix, ...)"
    extended = re.findall(r"\bkey_\w+\([^()]*\)\s*\.\.", code)
    assert not extended, f"{name} extends a built key ({extended}): add a family to keys.py"


def test_the_slot_probe_is_the_one_suffix_of_keys_py() -> None:
    code = _code(LUA["lib.lua"])
    assert "key .. SLOT_PROBE" in code
    assert f"local SLOT_PROBE = '{SLOT_PROBE_SUFFIX}'" in _lua.LIBRARY


def test_every_builder_the_lua_calls_is_a_family_and_written_once() -> None:
    called = {m for source in LUA.values() for m in re.findall(r"\bkey_(\w+)\(", _code(source))}
    assert called - set(BY_NAME) == set(), "key_<name>() called for no family of keys.py"
    for name in called:
        assert _lua.LIBRARY.count(f"local function key_{name}(") == 1


# -- Python and Lua build each family alike --------------------------------------------


def test_every_key_python_builds_is_a_family() -> None:
    keys = Keys.for_app("app")
    members = {
        name
        for name in dir(Keys)
        if not name.startswith("_") and name not in ("prefix", "for_app", "legacy")
    }
    families = {KEYS_RULES.get(name, name) for name in BY_NAME}
    assert members - families == set(), "a Keys member builds a key no family lists"
    for family in FAMILIES:
        member = getattr(keys, KEYS_RULES.get(family.name, family.name), None)
        if member is None:
            continue
        got = member(*_parts(family)) if callable(member) else member
        assert got == _expected(family, keys.prefix, _parts(family)), family.name


def test_every_family_is_built_by_python_or_lua() -> None:
    lua = "".join(_code(source) for source in LUA.values())
    unused = [
        f.name
        for f in FAMILIES
        if f"key_{f.name}(" not in lua and not hasattr(Keys, KEYS_RULES.get(f.name, f.name))
    ]
    assert not unused, f"families nobody builds: {unused}"


def test_the_builders_make_on_the_server_what_the_table_says(redis_url: str) -> None:
    families = [f for f in FAMILIES if f"local function key_{f.name}(" in _lua.LIBRARY]
    calls = ", ".join(
        f"key_{f.name}({', '.join(repr(a) for a in (PREFIX, *_parts(f)))})" for f in families
    )
    script = "".join(_lua.key_builder(f) for f in families) + f"return {{{calls}}}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        built = client.eval(script, 0)
    finally:
        client.close()
    assert built == [_expected(f, PREFIX, _parts(f)) for f in families]


def test_the_families_of_limits_and_unique_keys_are_listed() -> None:
    assert {"slots", "parked", "rate", "unique"} <= set(BY_NAME)
    assert BY_NAME["rate"].pattern == "rate:<task>:<window>"
