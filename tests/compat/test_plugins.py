"""Plugins ported from the original QTasks: the order they run in (pluggy's, not the
registration order) and the original's dict return on ``task_executor_args_replace``."""

from __future__ import annotations

from typing import Any

from qtasks_core import QueueTasks, hookimpl


class AddOne:
    @hookimpl
    def task_executor_run_task(self, result: Any) -> Any:
        return result + 1


class Double:
    @hookimpl
    def task_executor_run_task(self, result: Any) -> Any:
        return result * 2


class AddOneFirst:
    @hookimpl(tryfirst=True)
    def task_executor_run_task(self, result: Any) -> Any:
        return result + 1


def ten(app: QueueTasks) -> Any:
    @app.task
    def job() -> int:
        return 10

    with app.running_worker():
        return app.add_task("job", timeout=10).returning


def test_the_last_registered_plain_plugin_runs_first(app: QueueTasks) -> None:
    app.add_plugin(AddOne())
    app.add_plugin(Double())
    # Double runs first (registered last), AddOne gets its result: (10 * 2) + 1.
    assert ten(app) == 21


def test_tryfirst_restores_the_registration_order(app: QueueTasks) -> None:
    app.add_plugin(AddOneFirst())
    app.add_plugin(Double())
    assert ten(app) == 22  # (10 + 1) * 2: AddOne first, as the original ran them


def test_the_originals_dict_return_shows_the_expected_shape(app: QueueTasks) -> None:
    plugin_name = "ported-from-the-original"

    class Ported:
        @hookimpl
        def task_executor_args_replace(self, args: list[Any], kw: dict[str, Any]) -> Any:
            return {"args": args, "kw": kw}  # the original's shape

    app.add_plugin(Ported(), name=plugin_name)

    @app.task
    def job(x: int) -> int:
        return x

    with app.running_worker():
        task = app.add_task("job", 1, timeout=10)
    assert task.status == "error"
    last = (task.traceback or "").strip().splitlines()[-1]
    assert "PluginReturnError" in last
    assert plugin_name in last and "task_executor_args_replace" in last
    assert "expected None or a 2-tuple (args, kw); write `return args, kw`" in last
    assert "instead of the original QTasks' `return {'args': ..., 'kw': ...}`" in last
