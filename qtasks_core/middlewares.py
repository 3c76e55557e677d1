"""Task middlewares: code that runs around one task, given in ``@app.task``.

Two forms go in ``middlewares_before`` and ``middlewares_after``:

- a :class:`TaskMiddleware` subclass, the original QTasks' form. The worker makes one
  instance per task run, ``MyMiddleware(task_executor)``, and calls it with no
  arguments (``__call__`` may be ``async def``; a plain one runs on the worker's event
  loop, so it must not block)::

      from qtasks_core.middlewares import TaskMiddleware

      class Audit(TaskMiddleware):
          def __init__(self, task_executor):
              super().__init__(task_executor)

          async def __call__(self):
              log.info("running %s", self.task_executor.task_func.name)
              return self.task_executor

      @app.task(middlewares_before=[Audit], middlewares_after=[Audit])
      async def job(): ...

  ``__call__`` returns ``None`` or an executor. Before the task, a returned executor
  runs the rest of the task (later middlewares, argument plugins, the function); the
  middleware may also change ``task_executor.args`` / ``task_executor.kwargs``. After
  the task, ``task_executor.result`` holds the result, and a middleware replaces it by
  setting that attribute (on the executor it was given, or on the one it returns).
- a plain callable: ``mw(task_executor)`` before the task (its return is ignored) and
  ``mw(task_executor, result)`` after it (a return other than ``None`` replaces the
  result); sync or async.

:func:`check_middlewares` refuses, with what to write instead, anything else: a class
that does not subclass :class:`TaskMiddleware` (the original QTasks' own class among
them: import this module's instead), an instance where the class is expected, a
subclass without ``__call__``, or signatures that cannot take these calls. Nothing
given as a middleware is ever skipped.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import TaskOptionError

if TYPE_CHECKING:
    from .executor import TaskExecutor

__all__ = ["BaseMiddleware", "TaskMiddleware", "check_middlewares"]


class BaseMiddleware:
    """The root of middleware classes (the original QTasks' ``BaseMiddleware``).

    :param name: a name for logs; :class:`TaskMiddleware` uses the class name.
    """

    def __init__(self, name: str) -> None:
        self.name = name


class TaskMiddleware(BaseMiddleware):
    """Base class of task middlewares: subclass it and define ``__call__(self)``.

    :param task_executor: the executor of the task run (a
        :class:`~qtasks_core.executor.TaskExecutor`): ``task_func`` is the registered
        task, ``task_broker`` the claimed message (``uuid``, ``args``, ``kwargs``),
        ``args`` / ``kwargs`` what the function is about to receive, ``result`` (after
        the task) what it returned.
    :param name: a name for logs, as in the original's class docstring, where a
        subclass calls ``super().__init__(name=...)`` and sets ``self.task_executor``
        itself; default: the class name.
    """

    def __init__(self, task_executor: TaskExecutor | None = None, *, name: str | None = None):
        super().__init__(name=name or type(self).__name__)
        self.task_executor = task_executor

    def __call__(self) -> Any:
        """Run the middleware; return ``None`` or an executor (module docstring).

        A subclass must define it: :func:`check_middlewares` refuses one that does not.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define __call__(self)")


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


def _takes(func: Any, count: int) -> bool:
    """Whether ``func`` can be called with ``count`` positional arguments (``True`` when
    its signature cannot be read, as for some builtins: the call will tell)."""
    try:
        inspect.signature(func).bind(*range(count))
    except TypeError:
        return False
    except ValueError:
        return True
    return True


def _problem(middleware: Any, where: str) -> str | None:
    """What is wrong with one middleware in ``where`` (``"middlewares_before"`` or
    ``"middlewares_after"``), with what to write instead; ``None`` when it can run."""
    name = _name(middleware)
    if isinstance(middleware, TaskMiddleware):
        return (
            f"{where} holds an instance of {type(middleware).__qualname__}: give the class "
            f"itself ({where}=[{type(middleware).__qualname__}]); the worker makes one "
            "instance per task run, with the task's executor"
        )
    if isinstance(middleware, type):
        if not issubclass(middleware, TaskMiddleware):
            origin = middleware.__module__.split(".")[0]
            hint = (
                "import TaskMiddleware from qtasks_core.middlewares instead of the "
                "original QTasks' qtasks.middlewares"
                if origin == "qtasks"
                else "make it a subclass of qtasks_core.middlewares.TaskMiddleware, or "
                f"give a function instead ({_signature_hint(where)})"
            )
            return f"{where}: the class {name} is not a TaskMiddleware subclass: {hint}"
        if middleware.__call__ is TaskMiddleware.__call__:
            return (
                f"{where}: {name} does not define __call__; write "
                "`async def __call__(self): ...` (it runs once per task run)"
            )
        if not _takes(middleware, 1):
            return (
                f"{where}: {name}(task_executor) cannot be called: its __init__ must take "
                "the task executor, `def __init__(self, task_executor): "
                "super().__init__(task_executor)`"
            )
        if not _takes(middleware.__call__, 1):
            return (
                f"{where}: {name}.__call__ must take no arguments besides self "
                "(`async def __call__(self)`); the executor is self.task_executor"
            )
        return None
    if not callable(middleware):
        return (
            f"{where}: {middleware!r} is not callable; give a TaskMiddleware subclass or "
            f"a function ({_signature_hint(where)})"
        )
    count = 1 if where == "middlewares_before" else 2
    if not _takes(middleware, count):
        return f"{where}: {name} cannot be called as {_signature_hint(where)}"
    return None


def _signature_hint(where: str) -> str:
    return (
        "def mw(task_executor)"
        if where == "middlewares_before"
        else "def mw(task_executor, result), returning the new result or None"
    )


@functools.lru_cache(maxsize=1024)
def _check(task_name: str, before: tuple[Any, ...], after: tuple[Any, ...]) -> None:
    problems = [
        problem
        for where, items in (("middlewares_before", before), ("middlewares_after", after))
        for item in items
        if (problem := _problem(item, where)) is not None
    ]
    if problems:
        raise TaskOptionError(f"task {task_name!r}: " + "; ".join(problems))


def check_middlewares(
    task_name: str, before: Sequence[Any] = (), after: Sequence[Any] = ()
) -> None:
    """Refuse middlewares that could not run, before any task runs.

    Called where a task is declared, and again by the executor before a task with
    middlewares runs (cached), so that nothing given is ever skipped.

    :param task_name: the task's name, for the message.
    :param before: the task's ``middlewares_before``.
    :param after: the task's ``middlewares_after``.
    :raises TaskOptionError: naming every middleware that cannot run and what to write
        instead.
    """
    before, after = tuple(before), tuple(after)
    try:
        _check(task_name, before, after)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        _check.__wrapped__(task_name, before, after)
