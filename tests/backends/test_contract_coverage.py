"""The contract suite covers the whole protocol: every method of :class:`Backend` is
called by a test that runs on every kind.

The check reads the suite's source instead of recording calls at run time. A
recording proxy would see what really ran, but only when the whole suite ran: under
``-k``, a single file, a failure with ``-x`` or a run split across processes it
would have to stay silent (or fail for no fault of the backend), and it would have to
run after every other test. Read statically, the answer is the same whatever is
selected and in whatever order, and it still cannot be satisfied by a name alone: a
method counts only when it is *called* on the backend (``subject.backend.m(...)``,
or through an alias of it such as ``b = subject.backend``) in code reachable from a
test that takes the all-kinds ``subject`` fixture, directly or through the helpers it
calls (``Subject.add``, ``beating``, ...). A call in a Redis-only test
(``redis_subject``), in a skipped or xfailed test, under a branch on the kind
(``if subject.raw ...``), in a string or in a comment does not count.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from qtasks_core.backends import base
from tests.backends import support

HERE = Path(__file__).parent
#: The fixture that runs a test on every kind (see conftest.py).
ALL_KINDS = "subject"
#: Marks that keep a test from asserting anything.
NOT_RUN = {"skip", "skipif", "xfail"}
#: What a test branches on when it does something on one kind only.
KIND_TESTS = {"raw", "needs_redis", "param"}


def protocol_methods(protocol: type) -> set[str]:
    """The public methods a protocol declares, its bases' included."""
    return {
        name
        for klass in protocol.__mro__
        if klass is not object and getattr(klass, "_is_protocol", False)
        for name, value in vars(klass).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }


def _mentions(node: ast.AST, names: set[str]) -> bool:
    return any(
        (isinstance(n, ast.Name) and n.id in names)
        or (isinstance(n, ast.Attribute) and n.attr in names)
        for n in ast.walk(node)
    )


def _marks(function: ast.FunctionDef) -> set[str]:
    """The names of the pytest marks on ``function`` (``@pytest.mark.skip(...)``)."""
    found = set()
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute):
            found.add(target.attr)
    return found


class _Reach(ast.NodeVisitor):
    """What one function calls: methods on a backend, and helpers by name."""

    def __init__(self) -> None:
        self.backend_calls: set[str] = set()
        self.helpers: set[str] = set()
        self.aliases: set[str] = set()

    @staticmethod
    def _is_backend(node: ast.AST, aliases: set[str]) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "backend") or (
            isinstance(node, ast.Name) and node.id in aliases
        )

    def visit_Assign(self, node: ast.Assign) -> None:
        if self._is_backend(node.value, self.aliases):
            self.aliases |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        # Both branches of a test of the kind run on some kinds only.
        if not _mentions(node.test, KIND_TESTS):
            self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        if not _mentions(node.test, KIND_TESTS):
            self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and self._is_backend(func.value, self.aliases):
            self.backend_calls.add(func.attr)
        elif isinstance(func, ast.Name):
            self.helpers.add(func.id)
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in ("subject", "self")
        ):
            self.helpers.add(func.attr)
        self.generic_visit(node)


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef]:
    """Module-level functions and the methods of module-level classes."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            yield node
        elif isinstance(node, ast.ClassDef):
            yield from (n for n in node.body if isinstance(n, ast.FunctionDef))


def covered(sources: Iterable[str]) -> set[str]:
    """The backend methods called from tests on every kind, in ``sources``."""
    reach: dict[str, _Reach] = {}
    roots: list[str] = []
    for source in sources:
        for function in _functions(ast.parse(source)):
            visitor = _Reach()
            for statement in function.body:
                visitor.visit(statement)
            reach[function.name] = visitor
            arguments = {a.arg for a in function.args.args}
            if (
                function.name.startswith("test_")
                and ALL_KINDS in arguments
                and not _marks(function) & NOT_RUN
            ):
                roots.append(function.name)
    seen: set[str] = set()
    calls: set[str] = set()
    while roots:
        name = roots.pop()
        if name in seen or name not in reach:
            continue
        seen.add(name)
        calls |= reach[name].backend_calls
        roots += reach[name].helpers
    return calls


def contract_sources() -> list[str]:
    return [
        path.read_text()
        for path in [HERE / "support.py", *sorted(HERE.glob("test_contract*.py"))]
        if path.name != Path(__file__).name
    ]


def test_every_backend_method_is_exercised_on_every_kind() -> None:
    missing = protocol_methods(base.Backend) - covered(contract_sources())
    assert not missing, (
        f"not called by any contract test on every kind: {sorted(missing)}; add a test "
        f"taking the {ALL_KINDS!r} fixture that asserts what the components rely on"
    )


def test_the_all_kinds_fixture_runs_on_every_kind() -> None:
    conftest = ast.parse((HERE / "conftest.py").read_text())
    [fixture] = [f for f in _functions(conftest) if f.name == ALL_KINDS]
    [params] = [
        k.value
        for d in fixture.decorator_list
        if isinstance(d, ast.Call)
        for k in d.keywords
        if k.arg == "params"
    ]
    assert isinstance(params, ast.Name) and params.id == "KINDS"
    every = {"memory", "redis-lean", "redis-py", "redis-tls", "redis-cluster", "redis-cluster-py"}
    assert set(support.KINDS) == every


def test_each_method_belongs_to_exactly_one_component() -> None:
    parts = [
        base.LifecycleBackend,
        base.BrokerBackend,
        base.StorageBackend,
        base.ConfigBackend,
        base.SchedulerBackend,
    ]
    assert set(base.Backend.__bases__) - {Protocol} == set(parts)
    owned = [name for part in parts for name in protocol_methods(part)]
    assert sorted(owned) == sorted(protocol_methods(base.Backend))
    assert len(owned) == len(set(owned)), "a method declared by two components"


def test_the_check_counts_only_calls_on_every_kind() -> None:
    # The check itself must be able to fail: each of these places a call that does
    # not run on every kind, or is no call at all.
    source = """
import pytest

class Subject:
    def add(self, uuid):
        return run(self.backend.enqueue(uuid, {}, 0))

def helper(subject):
    subject.backend.extend({}, 1)

def unused(subject):
    subject.backend.release({})

def test_all(subject):
    b = subject.backend
    b.get("a")
    subject.add("a")
    helper(subject)
    "subject.backend.ping()"  # a string, and subject.backend.stats() a comment
    if subject.raw is not None:
        b.progress("a", "{}")
    else:
        b.dead_count()
    later = b.wake if subject.raw else None

def test_redis_only(redis_subject):
    redis_subject.backend.flush_all()

@pytest.mark.skip(reason="later")
def test_skipped(subject):
    subject.backend.purge_queue("q")
"""
    assert covered([source]) == {"get", "enqueue", "extend"}
