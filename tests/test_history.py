"""Every inner model gets the conversation on `llm -c` the way its plugin reads it:
from ``prompt.messages`` (llm 0.32+) or from ``conversation.responses`` (older plugins)."""

import json

from conftest import run_llm
from fake_models import history_log, read_calls

QUESTIONS = ["Why is the sky blue?", "and at sunset?", "and on Mars?"]


def test_three_turns_reach_both_kinds_of_plugin_once(user_path):
    options = ["-o", "proposers", "fake-oldstyle,fake-a", "-o", "aggregator", "fake-c"]
    first = run_llm("-m", "moa-default", *options, "-s", "Be brief.", QUESTIONS[0])
    assert first.exit_code == 0, first.output
    for question in QUESTIONS[1:]:
        result = run_llm("-c", question)
        assert result.exit_code == 0, result.output
    answers = [f"fake-c answers: {question}" for question in QUESTIONS]

    seen = [json.loads(line) for line in history_log().read_text().splitlines()]
    assert [entry["prompt"] for entry in seen] == QUESTIONS
    for turn, entry in enumerate(seen):  # conversation.responses: every earlier turn, in order
        assert [(t["prompt"], t["text"]) for t in entry["turns"]] == list(
            zip(QUESTIONS[:turn], answers[:turn])
        )
        assert all(t["system"].startswith("Be brief.") for t in entry["turns"])

    last = [call for call in read_calls() if call["model"] == "fake-a"][-1]
    # prompt.messages: the whole chain, each turn once (not also from the conversation)
    assert [(m["role"], m["text"]) for m in last["messages"][1:]] == [
        ("user", QUESTIONS[0]),
        ("assistant", answers[0]),
        ("user", QUESTIONS[1]),
        ("assistant", answers[1]),
        ("user", QUESTIONS[2]),
    ]
    assert last["messages"][0]["role"] == "system"


def test_a_single_turn_has_no_conversation(user_path):
    result = run_llm("-m", "moa-default", "-o", "proposers", "fake-oldstyle", "q")
    assert result.exit_code == 0, result.output
    [entry] = [json.loads(line) for line in history_log().read_text().splitlines()]
    assert entry == {"prompt": "q", "turns": []}
