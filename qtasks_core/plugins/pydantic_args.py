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

from pydantic import BaseModel

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
        if not models:
            return None
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
        return args, kw

    @hookimpl
    def task_executor_run_task(self, result: Any) -> Any:
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json")
        return None
