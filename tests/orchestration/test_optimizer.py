"""The prompt optimizer never loses the task: failures and bad rewrites fall back."""

from __future__ import annotations

from octopussy.errors import BackendUnavailable
from octopussy.orchestration.optimizer import PromptOptimizer
from octopussy.testing import ScriptedModel

TASK = "look at sales.csv whats the best month"


async def test_rewrites_the_task() -> None:
    better = "Read sales.csv in the workspace and report the month with the highest total sales."
    model = ScriptedModel([better])
    assert await PromptOptimizer(model).optimize(TASK) == better
    call = model.calls[0]
    assert call.messages[0].role == "system"
    assert "Do not answer the request yourself" in call.messages[0].content
    assert call.messages[1].content == TASK


async def test_disabled_makes_no_call() -> None:
    model = ScriptedModel([])
    assert await PromptOptimizer(model, enabled=False).optimize(TASK) == TASK
    assert model.calls == []


async def test_model_failure_keeps_the_original() -> None:
    model = ScriptedModel([BackendUnavailable("down", url="http://127.0.0.1:9")])
    assert await PromptOptimizer(model).optimize(TASK) == TASK


async def test_empty_or_rambling_or_lossy_rewrites_are_not_used() -> None:
    for bad in ("   ", "word " * 500, "Find the best month in the spreadsheet."):
        assert await PromptOptimizer(ScriptedModel([bad])).optimize(TASK) == TASK


async def test_a_rewrite_that_invents_a_path_is_not_used() -> None:
    task = "Change the port in config.json to 9090."
    model = ScriptedModel(["Open /path/to/config.json and set the port to 9090."])
    assert await PromptOptimizer(model).optimize(task) == task


async def test_a_rewrite_that_hands_the_work_to_the_user_is_not_used() -> None:
    task = "Change the port in config.json to 9090."
    model = ScriptedModel(
        [
            "Tell the user to open the config.json file in a text editor and change the "
            "port from 8080 to 9090."
        ]
    )
    assert await PromptOptimizer(model).optimize(task) == task
    kept = "Read config.json, set the port to 9090 and tell the user the new value."
    assert await PromptOptimizer(ScriptedModel([kept])).optimize(task) == kept
