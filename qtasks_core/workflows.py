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

import json
import time
import uuid as uuid_module
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._validate import check_args, check_kwargs, check_priority, check_queue, check_task_name
from .errors import TaskOptionError

if TYPE_CHECKING:
    from .app import QueueTasks

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

    def set(self, *, priority: int | None = None, queue: str | None = None) -> Signature:
        """The same call with another ``priority`` or ``queue``."""
        return Signature(
            self.task_name,
            self.args,
            self.kwargs,
            self.priority if priority is None else check_priority(priority),
            self.queue if queue is None else check_queue(queue),
            self.immutable,
        )

    def __or__(self, other: Flow) -> Chain:
        return chain(self, other)


@dataclass(frozen=True, slots=True)
class Chain:
    """Steps run one after another, each given the result of the one before."""

    steps: tuple[Flow, ...]

    def __or__(self, other: Flow) -> Chain:
        return chain(self, other)


@dataclass(frozen=True, slots=True)
class Group:
    """Members run side by side; the result is the list of their results, in order."""

    members: tuple[Flow, ...]

    def __or__(self, other: Flow) -> Chain:
        return chain(self, other)


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


def group(*members: Flow | Iterable[Flow]) -> Group:
    """Run ``members`` side by side; ``group(gen)`` takes one iterable too."""
    if len(members) == 1 and not isinstance(members[0], Signature | Chain | Group):
        members = tuple(members[0])
    return Group(tuple(_flow(m, "a member of a group") for m in members))


def chord(header: Group | Iterable[Flow], body: Flow) -> Chain:
    """Run the ``header`` group, then ``body`` with the list of its results."""
    return chain(header if isinstance(header, Group) else group(*header), body)


def signature(task_name: str, *args: Any, **kwargs: Any) -> Signature:
    """A call of ``task_name`` for a workflow (also ``handle.s(*args, **kwargs)``)."""
    name = check_task_name(task_name)
    return Signature(name, check_args(args, name), check_kwargs(kwargs, name))


def _count(flow: Flow) -> int:
    if isinstance(flow, Signature):
        return 1
    children = flow.steps if isinstance(flow, Chain) else flow.members
    return 1 + sum(_count(c) for c in children)


async def start(
    app: QueueTasks, flow: Flow, *, name: str, ttl: float | None
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

    async def build(node: Flow, path: str) -> None:
        if isinstance(node, Signature):
            options = {} if node.queue is None else {"queue": node.queue}
            call = await app._before_broker(
                node.task_name, node.args, dict(node.kwargs), node.priority, options
            )
            model = await app.broker._before(*call)
            _, model, record = await app.storage.prepare_add(f"{workflow_id}:{path}", model)
            nodes[path] = json.dumps(
                {"k": "t", "f": record, "p": model.priority, "i": node.immutable},
                separators=(",", ":"),
            )
            return
        children = node.steps if isinstance(node, Chain) else node.members
        kind = "c" if isinstance(node, Chain) else "g"
        nodes[path] = json.dumps({"k": kind, "n": len(children)})
        for i, child in enumerate(children):
            await build(child, f"{path}.{i}")

    await build(flow, "r")
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
    await app.backend.start_workflow(workflow_id, record, nodes)
    return workflow_id, record
