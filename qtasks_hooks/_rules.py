"""How a trigger's return value replaces the values that flow through it.

A spec declares its rule with one of the decorators below, stacked under
``@hookspec(firstresult=True)``. The chained caller reads the rule from the spec
function; a ``firstresult`` spec without a rule is a bug caught by the meta-tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

F = TypeVar("F", bound=Callable[..., object])

RULE_ATTR: Final = "__qtasks_rule__"

Kind = Literal["value", "keys", "pair"]
#: What a single replacement value must look like: ``model`` is anything with
#: ``model_dump`` (a pydantic model), so this package never imports pydantic.
Shape = Literal["any", "dict", "list", "model", "model_or_none"]


@dataclass(frozen=True, slots=True)
class ReplaceRule:
    """The return contract of one trigger.

    ``kind`` is ``value`` (the return replaces the argument ``names[0]``), ``keys``
    (the return is a dict whose keys, among ``names``, replace those arguments) or
    ``pair`` (the return is a 2-sequence replacing ``names[0]`` and ``names[1]``).
    """

    kind: Kind
    names: tuple[str, ...]
    shape: Shape = "any"
    #: Arguments derived from others, computed again after each replacement so the
    #: next impl never sees them stale: ``(name, compute(current arguments))``.
    refresh: tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...] = ()


def _attach(rule: ReplaceRule) -> Callable[[F], F]:
    def mark(func: F) -> F:
        setattr(func, RULE_ATTR, rule)
        return func

    return mark


def replaces_value(name: str, *, shape: Shape = "any") -> Callable[[F], F]:
    """The impl returns the new value of argument ``name`` itself (``None`` keeps it)."""
    return _attach(ReplaceRule("value", (name,), shape))


def replaces_keys(*names: str) -> Callable[[F], F]:
    """The impl returns a dict; each key among ``names`` replaces that argument."""
    return _attach(ReplaceRule("keys", names))


def replaces_pair(
    first: str,
    second: str,
    *,
    refresh: tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...] = (),
) -> Callable[[F], F]:
    """The impl returns ``(first, second)``; a ``None`` part keeps that argument.
    ``refresh`` names arguments derived from the pair, computed again after each
    replacement."""
    return _attach(ReplaceRule("pair", (first, second), refresh=refresh))


def rule_of(spec_function: object) -> ReplaceRule | None:
    """The rule a spec function declares, or ``None`` for a trigger without a return."""
    rule = getattr(spec_function, RULE_ATTR, None)
    return rule if isinstance(rule, ReplaceRule) else None
