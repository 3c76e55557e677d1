"""The sync edge of the app, made from its coroutines.

Every operation of the app is written once, as a coroutine ``<name>_async`` on
:class:`~qtasks_core.app.BaseQueueTasks`. The two apps differ only at their edge, as
httpx's ``Client`` and ``AsyncClient`` do:

- ``qtasks_core.QueueTasks`` declares ``get = sync_edge(BaseQueueTasks.get_async)``: a
  blocking method that runs the coroutine on the app's event-loop thread
  (:mod:`._portal`);
- ``qtasks_core.asyncio.QueueTasks`` declares ``get = BaseQueueTasks.get_async``: the
  coroutine itself, under the plain name.

A test (``tests/core/test_edges.py``) fails when an operation lacks one of its forms.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

P = ParamSpec("P")
R = TypeVar("R")


def _named(edge: Callable[..., Any], op: Callable[..., Any], name: str, owner: type) -> None:
    functools.update_wrapper(edge, op)  # the coroutine's signature, for help() and IDEs
    edge.__name__ = name
    edge.__qualname__ = f"{owner.__qualname__}.{name}"
    edge.__doc__ = f"Sync twin of :meth:`{op.__name__}` (blocks until it returns)."
    edge.__qtasks_edge__ = op  # type: ignore[attr-defined]


class sync_edge(Generic[P, R]):
    """``name = sync_edge(Base.name_async)`` in a class body: a blocking method.

    At class creation it puts a plain function in its place (no descriptor left on the
    path of every call): ``app._portal.call(op(app, ...))``.
    """

    def __init__(self, op: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]) -> None:
        self.op = op

    def __set_name__(self, owner: type, name: str) -> None:
        op = self.op

        def edge(app: Any, /, *args: Any, **kwargs: Any) -> Any:
            return app._portal.call(op(app, *args, **kwargs), name)

        _named(edge, op, name, owner)
        setattr(owner, name, edge)

    if TYPE_CHECKING:

        @overload
        def __get__(self, app: None, owner: type) -> Callable[Concatenate[Any, P], R]: ...

        @overload
        def __get__(self, app: object, owner: type | None = None) -> Callable[P, R]: ...

        def __get__(self, app: object, owner: type | None = None) -> Any: ...


class sync_iter_edge(Generic[P, R]):
    """``name = sync_iter_edge(Base.name_async)``: a sync iterator over an async one,
    each step run on the app's event-loop thread."""

    def __init__(self, op: Callable[Concatenate[Any, P], AsyncIterator[R]]) -> None:
        self.op = op

    def __set_name__(self, owner: type, name: str) -> None:
        op = self.op

        def edge(app: Any, /, *args: Any, **kwargs: Any) -> Iterator[Any]:
            items = op(app, *args, **kwargs)

            async def step() -> Any:
                return await anext(items, _END)

            while (item := app._portal.call(step(), name)) is not _END:
                yield item

        _named(edge, op, name, owner)
        setattr(owner, name, edge)

    if TYPE_CHECKING:

        @overload
        def __get__(self, app: None, owner: type) -> Callable[Concatenate[Any, P], Iterator[R]]: ...

        @overload
        def __get__(self, app: object, owner: type | None = None) -> Callable[P, Iterator[R]]: ...

        def __get__(self, app: object, owner: type | None = None) -> Any: ...


_END = object()
