"""Pydantic arguments: a task parameter annotated with a model receives an instance.

::

    class User(BaseModel):
        name: str
        age: int

    @app.task
    def register(user: User) -> User: ...

    app.add_task("register", user={"name": "Ada", "age": 36})   # a dict, validated
    app.add_task("register", name="Ada", age=36)                 # the model's fields

Invalid input ends the task ``error`` with pydantic's message; a returned model is
stored as its JSON.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel

from qtasks_hooks import hookimpl

from .._introspect import parameters, type_hints
from ..executor import TaskExecutor
from ..schemas import ArgMeta


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


@functools.lru_cache(maxsize=1024)
def _models(func: Any) -> dict[str, type[BaseModel]]:
    """Parameters of ``func`` annotated with a pydantic model (cached per function)."""
    return {n: m for n, a in type_hints(func).items() if (m := _model_of(a)) is not None}


class PydanticArgsPlugin:
    """Validates model-typed parameters before the task runs."""

    @hookimpl
    def task_executor_args_replace(
        self,
        task_executor: TaskExecutor,
        args: list[Any],
        kw: dict[str, Any],
        args_info: list[ArgMeta],
    ) -> tuple[list[Any], dict[str, Any]] | None:
        func = task_executor.task_func.func
        models = _models(func)
        if not models:
            return None
        params = list(parameters(func))
        if task_executor.task_func.echo and params:
            params = params[1:]
        args, kw = list(args), dict(kw)
        for position, param in enumerate(params):
            model = models.get(param.name)
            if model is None:
                continue
            if position < len(args):
                args[position] = model.model_validate(args[position])
            elif param.name in kw:
                kw[param.name] = model.model_validate(kw[param.name])
            else:
                # Built from the call's own keyword arguments (the original's behaviour).
                fields = {k: kw.pop(k) for k in list(kw) if k in model.model_fields}
                kw[param.name] = model.model_validate(fields)
        return args, kw

    @hookimpl
    def task_executor_run_task(self, result: Any) -> Any:
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json")
        return None
