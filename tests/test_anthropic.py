"""MoA with the real llm-anthropic 0.30, against a stand-in Anthropic Messages API.

Nothing of llm or the plugin is mocked: the plugin's own ``anthropic`` SDK
streams server-sent events from ``anthropic_server`` on 127.0.0.1, which
records every request. ``claude-haiku-4.5`` and ``claude-3.5-haiku`` are the
plugin's aliases of ``anthropic/claude-haiku-4-5-20251001`` and
``anthropic/claude-3-5-haiku-latest``.
"""

import json

import anthropic_server as ant
import pytest
import stand_in
from anthropic_server import AnthropicServer
from conftest import calls, closed_port, moa, record, run_llm, show_json
from openai_fixtures import set_key

HAIKU = "claude-haiku-4-5-20251001"
OLD = "claude-3-5-haiku-latest"
ANTHROPIC_KEY = "sk-ant-test-5b2d8f4a6c0e7f3a9c1e"
MIXED = ["-o", "proposers", "claude-haiku-4.5,fake-a", "-o", "aggregator", "claude-3.5-haiku"]


@pytest.fixture
def anthropic(monkeypatch, user_path):
    "The stand-in server, with llm-anthropic pointed at it and a key set the way a user sets one."
    with AnthropicServer() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base)
        set_key("anthropic", ANTHROPIC_KEY)
        yield server


def test_a_mixed_run_streams_and_each_member_is_asked(anthropic):
    result = moa(*MIXED, "What is rain?")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{OLD} says: What is rain?\n"
    [proposer] = anthropic.calls(HAIKU)
    [aggregator] = anthropic.calls(OLD)
    assert proposer.stream and aggregator.stream and proposer.sent_key(ANTHROPIC_KEY)
    assert proposer.last_user_text == "What is rain?" and "system" not in proposer.body
    assert f"{HAIKU} says: What is rain?" in aggregator.body["system"]
    assert "fake-a answers: What is rain?" in aggregator.body["system"]
    assert [(c["model"], c["status"]) for c in calls(record())] == [
        (f"anthropic/{HAIKU}", "ok"),
        ("fake-a", "ok"),
        (f"anthropic/{OLD}", "ok"),
    ]


def test_usage_is_what_the_server_reported(anthropic):
    result = moa(*MIXED, "-u", "What is rain?")
    assert result.exit_code == 0, result.output
    reported = {r.model: r.usage for r in anthropic.calls()}
    shown = show_json()
    for call in calls(record()):
        if call["model"].startswith("anthropic/"):
            sent = reported[call["model"].removeprefix("anthropic/")]
            assert call["usage"] == {"input": sent["input_tokens"], "output": sent["output_tokens"]}
    assert shown["cost"]["by_model"][f"anthropic/{HAIKU}"]["calls"] == 1


def test_three_turns_give_every_member_the_history(anthropic):
    combo = ["-o", "proposers", "claude-haiku-4.5", "-o", "aggregator", "claude-3.5-haiku"]
    assert moa(*combo, "one").exit_code == 0
    assert run_llm("-c", "two").exit_code == 0
    assert run_llm("-c", "three").exit_code == 0
    for model in (HAIKU, OLD):
        sent = [len(r.messages) for r in anthropic.calls(model)]
        assert sent == [1, 3, 5], model
    last = anthropic.calls(HAIKU)[-1].messages
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert last[1]["content"][0]["text"] == f"{OLD} says: one"  # the answer the user saw


def test_async(anthropic):
    result = moa(*MIXED, "--async", "What is rain?")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{OLD} says: What is rain?\n"
    assert len(anthropic.calls()) == 2


def test_tools_with_a_claude_aggregator(anthropic):
    def use_the_tool(received):
        results = [
            p for m in received.messages if isinstance(m["content"], list) for p in m["content"]
        ]
        if received.body.get("tools") and not any(p.get("type") == "tool_result" for p in results):
            return stand_in.Behaviour(tool_call=("llm_time", {}))
        return None

    anthropic.behave(HAIKU, use_the_tool)
    combo = ["-o", "proposers", "claude-3.5-haiku", "-o", "aggregator", "claude-haiku-4.5"]
    result = moa(*combo, "-T", "llm_time", "What time is it?")
    assert result.exit_code == 0, result.output
    last = anthropic.calls(HAIKU)[-1]
    results = [p for m in last.messages for p in m["content"] if isinstance(p, dict)]
    assert any(p.get("type") == "tool_result" and "utc_time" in str(p) for p in results)
    assert result.stdout.lstrip().startswith(f"{HAIKU} says: ")  # the plugin adds a " " on tool use


def test_schema_with_structured_output(anthropic):
    anthropic.behave(HAIKU, stand_in.Behaviour(reply='{"answer": "water"}'))
    combo = ["-o", "proposers", "claude-haiku-4.5,fake-a", "-o", "aggregator", "claude-haiku-4.5"]
    result = moa(*combo, "--schema", "answer str", "What is rain?")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"answer": "water"}
    for request in anthropic.calls(HAIKU):
        assert request.body["output_config"]["format"]["type"] == "json_schema"


def test_an_older_claude_answers_a_schema_with_a_tool_call_and_no_text(anthropic):
    "A known limit: claude-3.5-haiku's --schema answer is an output_structured_data tool call."
    combo = ["-o", "proposers", "claude-3.5-haiku", "-o", "aggregator", "claude-haiku-4.5"]
    result = moa(*combo, "--schema", "answer str", "What is rain?", ok=False)
    assert result.exit_code == 1
    assert "claude-3-5-haiku-latest (proposer 1): returned an empty answer" in result.stderr
    [request] = anthropic.calls(OLD)
    assert request.body["tool_choice"] == {"type": "tool", "name": "output_structured_data"}


@pytest.mark.parametrize("failure", [ant.rate_limited("0"), ant.overloaded()], ids=["429", "529"])
def test_rate_limited_or_overloaded_then_answered(anthropic, failure):
    anthropic.behave(OLD, failure, times=1)
    result = moa(*MIXED, "q")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{OLD} says: q\n"
    assert len(anthropic.calls(OLD)) == 2  # the SDK's own retry (retry-after honoured)


def test_a_failed_aggregator_keeps_its_proposals(anthropic):
    anthropic.behave(OLD, stand_in.Behaviour(status=500, retry_after="0"))
    result = moa(*MIXED, "q", ok=False)
    assert result.exit_code == 1
    assert "Internal server error" in result.stderr
    assert len(anthropic.calls(OLD)) == 3  # the SDK retried twice
    run_id = result.stderr.split("llm moa unfinished ")[1].split()[0]
    kept = json.loads(run_llm("moa", "unfinished", run_id, "--json").output)
    assert [p["text"] for p in kept["run"]["proposer_layers"][0]["proposers"]] == [
        f"{HAIKU} says: q",
        "fake-a answers: q",
    ]


def test_connection_refused(anthropic, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", closed_port())
    result = moa("-o", "proposers", "claude-haiku-4.5,fake-a", "-o", "aggregator", "fake-b", "q")
    assert result.exit_code == 0, result.output
    assert result.stdout == "fake-b answers: q\n"
    [failed, _] = record()["proposer_layers"][0]["proposers"]
    assert failed["status"] == "failed" and "Connection error" in failed["error"]


def test_copies_each_get_a_call(anthropic):
    result = moa("-o", "proposers", "claude-haiku-4.5*3", "-o", "aggregator", "fake-a", "q")
    assert result.exit_code == 0, result.output
    assert len(anthropic.calls(HAIKU)) == 3
    assert [c["status"] for c in record()["proposer_layers"][0]["proposers"]] == ["ok"] * 3


def test_a_cut_stream_is_truncated(anthropic):
    anthropic.behave(HAIKU, stand_in.dropped(after=2, how="eof"))
    result = moa(*MIXED, "-o", "retries", "0", "q")
    assert result.exit_code == 0, result.output
    cut, whole = record()["proposer_layers"][0]["proposers"]
    assert cut["truncated"] is True and "truncated" not in whole
    shown = run_llm("moa", "show").output
    assert f"anthropic/{HAIKU} · ok" in shown and "truncated" in shown
