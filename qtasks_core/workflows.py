"""Workflows: chains, groups and chords of tasks that the backend advances itself.

A workflow is started in one atomic write (its record, its whole tree and its first
tasks) and advanced by the backend in the same step that writes each member's final
status: no process holds a workflow in memory, so a killed worker or producer neither
loses a step nor runs one twice (a task killed mid-run runs again, as any task does)::

    from qtasks_core import chain, chord, group

    flow = chain(fetch.s(url), parse.s(), store.s())      # parse(fetch(url)) ...
    flow = group(resize.s(img, size) for size in (64, 128, 256))   # a list of results
    flow = chord([count.s(part) for part in parts], total.s())     # total([counts])
    task = app.start_workflow(flow)
    result = app.wait(task.uuid, timeout=60).returning

A step of a chain gets the result of the step before as its first argument (``.si()``
makes a signature that takes none); a group's members all get that same input, and a
group's result is the list of its members' results in order. A member that ends
``error`` (retries spent, a dead letter) or ``cancel`` ends the workflow ``error``
naming it; the members still queued are cancelled, those running finish.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid as uuid_module
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from . import _current
from ._validate import (
    check_args,
    check_kwargs,
    check_priority,
    check_queue,
    check_task_name,
    check_timeout,
)
from .errors import TaskOptionError
from .reading import ReadOps
from .schemas import Task, TaskPage, WorkflowNode, WorkflowView

if TYPE_CHECKING:
    from .app import BaseQueueTasks

#: Members of one workflow at most: its tree is written in one atomic call.
MAX_MEMBERS = 10_000


@dataclass(frozen=True, slots=True)
class Signature:
    """One task call, not sent yet: a step of a workflow (``handle.s(...)``,
    ``app.signature(name, ...)``)."""

    task_name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int | None = None
    queue: str | None = None
    #: Takes no result from the step before.
    immutable: bool = False
    #: The app its task handle belongs to (``flow.add_task()`` sends it there).
    app: BaseQueueTasks | None = field(default=None, compare=False, repr=False)

    def set(self, *, priority: int | None = None, queue: str | None = None) -> Signature:
        """The same call with another ``priority`` or ``queue``."""
        return dataclasses.replace(
            self,
            priority=self.priority if priority is None else check_priority(priority),
            queue=self.queue if queue is None else check_queue(queue),
        )

    def __or__(self, other: Flow) -> Chain:
        return chain(self, other)


class _Runnable:
    """``add_task`` for a workflow: sent to the app of its first signature's task."""

    __slots__ = ()

    def __or__(self, other: Flow) -> Chain:
        return chain(self, other)  # type: ignore[arg-type]

    def _app(self, app: BaseQueueTasks | None) -> BaseQueueTasks:
        if app is not None:
            return app
        for sig in _signatures(self):  # type: ignore[arg-type]
            if sig.app is not None:
                return sig.app
        current = _current.current()
        if current is None:
            raise RuntimeError("this workflow belongs to no app: pass app=, or create the app")
        return current

    def add_task(
        self,
        *,
        app: BaseQueueTasks | None = None,
        timeout: float | None = None,
        on_error: Signature | None = None,
        name: str = "workflow",
    ) -> Task:
        """Start this workflow (see :meth:`QueueTasks.start_workflow`); on an app of
        :mod:`qtasks_core.asyncio` this returns the coroutine to await."""
        # The app's own edge: blocking on QueueTasks, a coroutine on the asyncio app's.
        start_workflow: Callable[..., Task] = self._app(app)._edge("start_workflow")
        return start_workflow(self, timeout=timeout, on_error=on_error, name=name)

    async def add_task_async(
        self,
        *,
        app: BaseQueueTasks | None = None,
        timeout: float | None = None,
        on_error: Signature | None = None,
        name: str = "workflow",
    ) -> Task:
        """Async twin of :meth:`add_task`."""
        return await self._app(app).start_workflow_async(
            self,  # type: ignore[arg-type]
            timeout=timeout,
            on_error=on_error,
            name=name,
        )


@dataclass(frozen=True, slots=True)
class Chain(_Runnable):
    """Steps run one after another, each given the result of the one before."""

    steps: tuple[Flow, ...]


@dataclass(frozen=True, slots=True)
class Group(_Runnable):
    """Members run side by side; the result is the list of their results, in order.

    With ``settle``, a member that fails does not fail the workflow: its place in the
    list holds ``{"error": ..., "status": ..., "uuid": ..., "task_name": ...}`` and the
    group completes once every member has ended.
    """

    members: tuple[Flow, ...]
    settle: bool = False


Flow = Signature | Chain | Group


def _flow(step: Any, where: str) -> Flow:
    if isinstance(step, Signature | Chain | Group):
        return step
    if isinstance(step, list | tuple):
        return group(*step)
    raise TaskOptionError(
        f"{where} must be a signature (task.s(...)), a chain, a group or a list of them, "
        f"not {type(step).__name__}"
    )


def chain(*steps: Flow | Iterable[Flow]) -> Chain:
    """Run ``steps`` in order; each gets the previous result as its first argument.
    Nested chains are flattened."""
    flat: list[Flow] = []
    for step in steps:
        node = _flow(step, "a step of a chain")
        flat.extend(node.steps if isinstance(node, Chain) else (node,))
    if not flat:
        raise TaskOptionError("a chain needs at least one step")
    return Chain(tuple(flat))


def group(*members: Flow | Iterable[Flow], settle: bool = False) -> Group:
    """Run ``members`` side by side; ``group(gen)`` takes one iterable too. See
    :class:`Group` for ``settle``."""
    if len(members) == 1 and not isinstance(members[0], Signature | Chain | Group):
        members = tuple(members[0])
    if not isinstance(settle, bool):
        raise TaskOptionError(f"settle must be True or False, not {settle!r}")
    return Group(tuple(_flow(m, "a member of a group") for m in members), settle)


def chord(header: Group | Iterable[Flow], body: Flow, *, settle: bool = False) -> Chain:
    """Run the ``header`` group, then ``body`` with the list of its results (with
    ``settle``: once every member has ended, errors in the place of results)."""
    if isinstance(header, Group):
        head = dataclasses.replace(header, settle=header.settle or settle)
    else:
        head = group(*header, settle=settle)
    return chain(head, body)


def signature(
    task_name: str,
    args: Iterable[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    app: BaseQueueTasks | None = None,
) -> Signature:
    """A call of ``task_name`` as a step of a workflow (``handle.s(*args, **kwargs)``
    is the short form)."""
    name = check_task_name(task_name)
    return Signature(
        name,
        check_args(args, name),
        check_kwargs(kwargs, name),
        None if priority is None else check_priority(priority),
        None if queue is None else check_queue(queue),
        app=app,
    )


def _signatures(flow: Flow) -> Iterable[Signature]:
    if isinstance(flow, Signature):
        yield flow
        return
    for child in flow.steps if isinstance(flow, Chain) else flow.members:
        yield from _signatures(child)


def _count(flow: Flow) -> int:
    if isinstance(flow, Signature):
        return 1
    children = flow.steps if isinstance(flow, Chain) else flow.members
    return 1 + sum(_count(c) for c in children)


async def start(
    app: BaseQueueTasks,
    flow: Flow,
    *,
    name: str,
    ttl: float | None,
    on_error: Signature | None = None,
) -> tuple[str, dict[str, str]]:
    """Build the workflow's record and tree (every member through the triggers an
    enqueue fires before writing) and start it; returns its id and record."""
    flow = _flow(flow, "a workflow")
    if _count(flow) > MAX_MEMBERS:
        raise TaskOptionError(
            f"a workflow holds at most {MAX_MEMBERS} steps, groups and chains; split it"
        )
    workflow_id = str(uuid_module.uuid4())
    nodes: dict[str, str] = {}

    if on_error is not None and not isinstance(on_error, Signature):
        raise TaskOptionError(
            f"on_error must be a signature (task.s(...)), not {type(on_error).__name__}"
        )

    async def build(node: Flow, path: str) -> None:
        if isinstance(node, Signature):
            options = {} if node.queue is None else {"queue": node.queue}
            call = await app.producer.call(
                node.task_name, node.args, dict(node.kwargs), node.priority, options
            )
            prepared = await app.producer.prepare(call, f"{workflow_id}:{path}")
            model, record = prepared.model, prepared.record
            nodes[path] = json.dumps(
                {
                    "k": "t",
                    "f": record,
                    "p": model.priority,
                    "i": node.immutable,
                    # The result passed in counts too: checked when the step is queued.
                    "m": app.storage.max_payload,
                },
                separators=(",", ":"),
            )
            return
        if isinstance(node, Chain):
            children, shape = node.steps, {"k": "c", "n": len(node.steps)}
        else:
            children, shape = node.members, {"k": "g", "n": len(node.members)}
            if node.settle:
                shape["s"] = True
        nodes[path] = json.dumps(shape)
        for i, child in enumerate(children):
            await build(child, f"{path}.{i}")

    await build(flow, "r")
    if on_error is not None:
        # Path "e": run once (a deterministic uuid) when the workflow fails, given
        # {"workflow", "member", "task_name", "status", "error"} as its first argument.
        await build(on_error, "e")
    now = f"{time.time():.6f}"
    record = {
        "status": "process",
        "task_name": name,
        "priority": "0",
        "args": "[]",
        "kwargs": "{}",
        "created_at": now,
        "updated_at": now,
        "attempts": "0",
        "workflow": "1",
    }
    if ttl is not None:
        record["ttl"] = str(max(1, int(ttl)))
    await app.broker.start_workflow(workflow_id, record, nodes)
    return workflow_id, record


def _path_order(path: str) -> tuple[int, ...]:
    """A workflow path (``r.0.10``) in tree order: r.0.2 before r.0.10; ``e`` last."""
    if path == "e":
        return (1,)
    return (0, *(int(part) for part in path.split(".")[1:] if part.isdigit()))


class WorkflowOps(ReadOps):
    """The app's workflows: start, list and read them (every operation has its sync
    twin on ``qtasks_core.QueueTasks``)."""

    def signature(
        self,
        task_name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
    ) -> Signature:
        """A call of ``task_name`` as a step of a workflow (``handle.s(...)`` is the
        short form)."""
        return signature(task_name, args, kwargs, queue=queue, priority=priority, app=self._whole)

    async def start_workflow_async(
        self,
        flow: Flow,
        *,
        name: str = "workflow",
        timeout: float | None = None,
        on_error: Signature | None = None,
    ) -> Task:
        """Start a chain, group or chord (:mod:`qtasks_core.workflows`); returns the
        workflow's own task: ``process`` until it ends ``success`` with the last step's
        result as ``returning`` (a group's: the list of its members' results), or
        ``error`` naming the member that failed. Wait for it like any task
        (``app.wait(task.uuid, timeout)``, or ``timeout=`` here). ``on_error``: a
        signature run once if the workflow fails, given ``{"workflow", "member",
        "task_name", "status", "error"}`` as its first argument.

        The workflow and its first tasks are written at once; the backend then starts
        each next step in the same atomic step that writes a member's final status.
        """
        check_task_name(name)
        timeout = check_timeout(timeout)
        await self.start_async()
        uuid, _ = await start(
            self._whole, flow, name=name, ttl=self.storage.result_ttl, on_error=on_error
        )
        if self.eager:
            await self._run_workflow_eagerly(uuid)
        if timeout is not None or self.eager:
            return await self.wait_async(uuid, timeout if timeout is not None else 0.1)
        task = await self.get_async(uuid)
        assert task is not None
        return task

    async def list_workflows_async(self, *, before: str | None = None, limit: int = 50) -> TaskPage:
        """A page of workflows (their own tasks), newest first: running and ended, for
        as long as their records are kept. ``before``: the ``next`` of the previous
        page."""
        await self.start_async()
        tasks, cursor = await self.storage.list_workflows(before, limit)
        return TaskPage(tasks=tasks, next=cursor)

    async def workflow_async(self, uuid: str) -> WorkflowView | None:
        """The workflow ``uuid``: its own task and its tree with each member's status
        (``waiting`` for a step whose turn has not come); ``None`` if there is no such
        workflow (or it expired)."""
        task = await self.get_async(uuid)
        if task is None or not task.is_workflow:
            return None
        stored = await self.storage.workflow_nodes(uuid)
        kinds: dict[str, Literal["task", "chain", "group"]] = {
            "t": "task",
            "c": "chain",
            "g": "group",
        }
        nodes = []
        for path in sorted((p for p in stored if "#" not in p), key=_path_order):
            try:
                node = json.loads(stored[path])
            except ValueError:
                continue
            if not isinstance(node, dict) or node.get("k") not in kinds:
                continue
            view = WorkflowNode(path=path, kind=kinds[node["k"]], settle=bool(node.get("s")))
            if node["k"] == "t":
                view.task_name = str((node.get("f") or {}).get("task_name", ""))
                view.uuid = f"{uuid}:{path}"
            nodes.append(view)
        # Every member's status in one round trip, however large the workflow.
        members = [n for n in nodes if n.uuid is not None]
        records = await self.storage.records([n.uuid for n in members if n.uuid])
        for view, member in zip(members, records, strict=True):
            view.status = member.get("status") if member else "waiting"
        return WorkflowView(task=task, nodes=nodes)

    async def _run_workflow_eagerly(self, uuid: str) -> None:
        from .worker import Worker

        # Every member as it is queued, until the workflow has ended.
        for _ in range(MAX_MEMBERS):
            task = await self.get_async(uuid)
            if task is None or task.status != "process":
                return
            await Worker(self._whole, concurrency=1).run(burst=True)
