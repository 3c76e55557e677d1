"""``QueueConfig`` read from ``QTASKS_*`` variables: what a user exporting them sees."""

from __future__ import annotations

import pydantic
import pytest

from qtasks_core import QueueConfig


def test_variables_set_the_settings_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_EVENTS", "true")
    monkeypatch.setenv("qtasks_events_max", "50")
    monkeypatch.setenv("QTASKS_LOGS_DEFAULT_LEVEL_SERVER", "debug")
    config = QueueConfig()
    assert (config.events, config.events_max, config.logs_default_level_server) == (True, 50, 10)


def test_none_clears_a_setting_and_code_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QTASKS_RESULT_TTL", "none")
    monkeypatch.setenv("QTASKS_TASK_DEFAULT_PRIORITY", "3")
    config = QueueConfig(task_default_priority=1)
    assert config.result_ttl is None
    assert config.task_default_priority == 1


def test_a_bad_value_names_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_EVENTS_MAX", "0")
    with pytest.raises(pydantic.ValidationError, match="events_max"):
        QueueConfig()
