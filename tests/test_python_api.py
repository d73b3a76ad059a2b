"""moa-default through llm's Python API, sync and async, like any other model."""

import asyncio
import json
import time

import llm
import pytest
from fake_models import read_calls

SLOW_AGGREGATOR = {"text": "one two three four five", "chunk_delay": 0.3}


def test_prompt_with_options_as_keywords():
    model = llm.get_model("moa-default")
    response = model.prompt("hello", proposers=["fake-a", "fake-b"], aggregator="fake-c")
    assert response.text() == "fake-c answers: hello"
    assert sorted(c["model"] for c in read_calls()) == ["fake-a", "fake-b", "fake-c"]
    run = response.json()["moa"]
    assert run["calls"] == 3
    usage = response.usage()
    assert usage.input > 0 and usage.output == 3 * 3
    assert usage.details["moa_calls"] == 3


def test_first_chunk_arrives_before_the_aggregator_finishes():
    model = llm.get_model("moa-default")
    response = model.prompt(
        "q", proposers=["fake-a"], aggregator="fake-b", aggregator_options=SLOW_AGGREGATOR
    )
    start = time.monotonic()
    arrivals = [(time.monotonic() - start, chunk) for chunk in response]
    assert "".join(chunk for _, chunk in arrivals) == SLOW_AGGREGATOR["text"]
    first, last = arrivals[0][0], arrivals[-1][0]
    assert last - first >= 1.0  # four gaps of 0.3 s
    assert first < 0.5


def test_async_model_text_and_stream():
    async def run():
        model = llm.get_async_model("moa-default")
        text = await model.prompt("hi", proposers=["fake-a", "fake-b"], aggregator="fake-c").text()
        response = model.prompt(
            "q", proposers=["fake-a"], aggregator="fake-b", aggregator_options=SLOW_AGGREGATOR
        )
        start = time.monotonic()
        arrivals = [(time.monotonic() - start, chunk) async for chunk in response]
        usage = await response.usage()
        return text, arrivals, usage

    text, arrivals, usage = asyncio.run(run())
    assert text == "fake-c answers: hi"
    assert "".join(chunk for _, chunk in arrivals) == SLOW_AGGREGATOR["text"]
    assert arrivals[0][0] < 0.5 and arrivals[-1][0] - arrivals[0][0] >= 1.0
    assert usage.details["moa_calls"] == 2


def test_async_runs_do_not_block_the_event_loop():
    async def run():
        model = llm.get_async_model("moa-default")
        slow = {"delay": 1.0}
        prompts = [
            model.prompt(
                f"q{i}", proposers=["fake-a"], aggregator="fake-b", proposer_options=slow
            ).text()
            for i in range(3)
        ]
        return await asyncio.gather(*prompts)

    texts = asyncio.run(run())
    assert texts == [f"fake-b answers: q{i}" for i in range(3)]
    # three runs side by side: every slow proposer started before any of them ended
    slow = [c for c in read_calls() if c["model"] == "fake-a"]
    assert max(c["started"] for c in slow) < min(c["ended"] for c in slow)


def test_conversation_keeps_history_and_combo():
    conversation = llm.get_model("moa-default").conversation()
    first = conversation.prompt(
        "Why is the sky blue?", proposers=["fake-b", "fake-c"], aggregator="fake-a"
    )
    assert first.text() == "fake-a answers: Why is the sky blue?"
    second = conversation.prompt("and at sunset?")
    assert second.text() == "fake-a answers: and at sunset?"
    later = read_calls()[3:]
    assert sorted(c["model"] for c in later) == ["fake-a", "fake-b", "fake-c"]
    for call in later:
        assert [m["role"] for m in call["messages"]][-3:] == ["user", "assistant", "user"]


def test_bad_options_raise_value_error_before_any_call():
    model = llm.get_model("moa-default")
    # llm checks a model's options itself, and names the option, the value and the range
    with pytest.raises(
        ValueError, match="layers\n  Input should be greater than or equal to 2, got 1"
    ):
        model.prompt("q", layers=1).text()
    assert read_calls() == []


def test_total_failure_raises_model_error():
    model = llm.get_model("moa-default")
    with pytest.raises(llm.ModelError, match="No proposer answered"):
        model.prompt(
            "q", proposers=[{"model": "fake-a", "options": {"fail": "down"}}], retries=0
        ).text()


def test_response_json_is_plain_json():
    response = llm.get_model("moa-default").prompt(
        "q", proposers="fake-a,fake-b", aggregator="fake-c"
    )
    response.text()
    assert json.loads(json.dumps(response.json()))["moa"]["aggregator"]["model"] == "fake-c"
