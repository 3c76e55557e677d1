"""Pydantic arguments: a task parameter annotated with a model receives an instance.

::

    class Item(BaseModel):
        name: str
        value: int

    @app.task
    def store(item: Item, retries: int = 3) -> Item: ...

    app.add_task("store", item={"name": "Test", "value": 42})  # a dict, validated
    app.add_task("store", {"name": "Test", "value": 42})       # the same, positionally
    app.add_task("store", name="Test", value=42)               # the model's fields
    app.add_task("store", "Test", 42)                          # its fields, in order
    app.add_task("store", "Test", value=42)                    # mixed
    app.add_task("store", "Test", 42, 5)                       # then retries=5

How a model parameter gets its value, first rule that applies:

1. a keyword argument of its own name (a dict or an instance);
2. the positional argument at its place, when that is a dict or an instance;
3. the model's fields: keyword arguments named after a field (and not after another
   parameter of the function), then the positional arguments from its place on, one
   per field still missing, in the order the model declares its fields. Positional
   arguments left over go to the parameters after the model. With none of these, a
   parameter with a default keeps it.

Every other annotated parameter is converted by its annotation as well, in pydantic's
lax mode: arguments travel as JSON, so a ``datetime``, ``Decimal``, ``UUID``, enum,
dataclass or ``TypedDict`` parameter receives its type, not the string or dict it
arrived as, and ``"2"`` sent to ``a: int`` arrives as ``2``. One ``TypeAdapter`` per
function checks them all in one call; it is built on the function's first run and
kept. A parameter without an annotation (or annotated ``Any`` or ``object``) is passed
as it came, and a function with none to convert pays nothing.

Invalid input ends the task ``error`` with pydantic's message; a returned model is
stored as its JSON.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, PydanticUserError, TypeAdapter
from typing_extensions import TypedDict

from qtasks_hooks import hookimpl

from .._introspect import parameters, type_hints
from ..executor import TaskExecutor


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        # Optional[Item] (Item | None) is still a model parameter.
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = members[0] if len(members) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


@functools.lru_cache(maxsize=1024)
def _models(func: Any) -> dict[str, type[BaseModel]]:
    """Parameters of ``func`` annotated with a pydantic model (cached per function)."""
    return {n: m for n, a in type_hints(func).items() if (m := _model_of(a)) is not None}


#: Types that JSON decodes to: an argument of exactly its parameter's type is passed on.
_JSON_TYPES: frozenset[type] = frozenset({int, float, str, bool, list, dict})
#: Annotations that convert nothing: the value is passed as it came.
_AS_IS: frozenset[Any] = frozenset({Any, object, inspect.Parameter.empty})


def adapter_for(annotation: Any) -> TypeAdapter[Any] | None:
    """What converts a value to ``annotation`` (the worker's rule, which ``qtasks add``
    follows too); ``None`` when the value is passed as it came: no annotation, ``Any``
    or ``object``, or a class pydantic cannot build (a context, a client), or a
    ``typing.TypedDict`` on Python 3.11, which pydantic refuses."""
    if annotation in _AS_IS:
        return None
    try:
        return TypeAdapter(annotation)
    except PydanticUserError:
        return None


@functools.lru_cache(maxsize=1024)
def _converter(func: Any, echo: bool) -> _Converter | None:
    """The parameters of ``func`` converted by their annotations (models excepted: they
    have their own rules), with one adapter that converts them together; ``None`` when
    there are none. ``echo``: the first parameter is the task's context, not passed."""
    hints = type_hints(func)
    params = parameters(func)[1:] if echo else parameters(func)
    fields: dict[str, Any] = {}
    places: dict[str, int] = {}
    positional = True
    for position, param in enumerate(params):
        if param.kind in (param.VAR_POSITIONAL, param.KEYWORD_ONLY, param.VAR_KEYWORD):
            positional = False  # no argument after *args lands on a named parameter
            if param.kind is not param.KEYWORD_ONLY:
                continue
        annotation = hints.get(param.name, inspect.Parameter.empty)
        if _model_of(annotation) is not None or adapter_for(annotation) is None:
            continue
        fields[param.name] = annotation
        if positional:
            places[param.name] = position
    if not fields:
        return None
    # total=False: a parameter the caller left out keeps its default (or is filled by
    # another plugin, as Depends does) and is not checked.
    shape = TypedDict(f"{getattr(func, '__name__', 'task')}_args", fields, total=False)  # type: ignore[misc]
    exact = {name: a for name, a in fields.items() if a in _JSON_TYPES}
    return _Converter(frozenset(fields), places, TypeAdapter(shape), exact)


class _Converter(typing.NamedTuple):
    names: frozenset[str]
    #: Each converted parameter that an argument can fill by position, with its place.
    places: dict[str, int]
    adapter: TypeAdapter[Any]
    #: Parameters annotated with a type JSON itself gives (``int``, ``str`` …).
    exact: dict[str, type]

    def convert(self, args: list[Any], kw: dict[str, Any]) -> bool:
        """Convert the given arguments of annotated parameters in place; whether any
        was converted."""
        places = self.places
        given = {name: args[place] for name, place in places.items() if place < len(args)}
        for name in self.names.intersection(kw):
            given[name] = kw[name]
        exact = self.exact
        # The common case, ``a: int`` given an int: already its type, nothing to check.
        if all(type(value) is exact.get(name) for name, value in given.items()):
            return False
        for name, value in self.adapter.validate_python(given).items():
            place = places.get(name)
            if place is not None and place < len(args):
                args[place] = value
            else:
                kw[name] = value
        return True


def _from_fields(
    model: type[BaseModel],
    param: inspect.Parameter,
    position: int,
    args: list[Any],
    kw: dict[str, Any],
    others: set[str],
) -> None:
    """Rule 3 of the module docstring, in place: the model built from its fields'
    keyword arguments (taken out of ``kw``) and the positional arguments from
    ``position`` on (taken out of ``args``), then put in their place."""
    data = {k: kw.pop(k) for k in list(kw) if k in model.model_fields and k not in others}
    rest = args[position:]
    for field in model.model_fields:
        if not rest:
            break
        if field not in data:
            data[field] = rest.pop(0)
    if not data and param.default is not param.empty:
        return  # nothing given for it: the function's own default stands
    instance = model.model_validate(data)
    if position <= len(args):
        args[position:] = [instance, *rest]
    else:
        # A gap before this parameter (its predecessors come by keyword): so must it.
        kw[param.name] = instance


class PydanticArgsPlugin:
    """Validates model-typed parameters before the task runs."""

    # First in the chain (as in the original QTasks, where it ran before Depends and
    # State): positional arguments spread into a model's fields shift the places of the
    # parameters after it, which the other argument plugins look at.
    @hookimpl(tryfirst=True)
    def task_executor_args_replace(
        self, task_executor: TaskExecutor, args: list[Any], kw: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]] | None:
        func = task_executor.task_func.func
        models = _models(func)
        converter = _converter(func, task_executor.task_func.echo)
        if not models:
            if converter is None:
                return None
            args, kw = list(args), dict(kw)
            return (args, kw) if converter.convert(args, kw) else None
        params = list(parameters(func))
        if task_executor.task_func.echo and params:
            params = params[1:]
        names = {p.name for p in params}
        args, kw = list(args), dict(kw)
        for position, param in enumerate(params):
            model = models.get(param.name)
            if model is None:
                continue
            if param.name in kw:
                kw[param.name] = model.model_validate(kw[param.name])
            elif position < len(args) and isinstance(args[position], Mapping | model):
                args[position] = model.model_validate(args[position])
            else:
                _from_fields(model, param, position, args, kw, names - {param.name})
        if converter is not None:
            converter.convert(args, kw)
        return args, kw

    @hookimpl
    def task_executor_run_task(self, result: Any) -> Any:
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json")
        return None
