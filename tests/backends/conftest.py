"""The contract suite's fixtures: one backend of each kind (see ``support.KINDS``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.backends.support import KINDS, REDIS_KINDS, Subject, close_loop, subject_of


@pytest.fixture(autouse=True)
def _one_loop_per_test() -> Iterator[None]:
    """Each test's backend calls share one event loop, ended with the test."""
    yield
    close_loop()


@pytest.fixture(params=KINDS)
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    """A backend of every kind in turn: what the contract holds everywhere."""
    yield from subject_of(request)


@pytest.fixture(params=REDIS_KINDS)
def redis_subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    """A backend on Redis only: garbage left by ``redis-cli`` exists there alone."""
    yield from subject_of(request)
