"""MoA with the real llm-ollama 0.19.1, against a stand-in Ollama server.

Nothing of llm or the plugin is mocked: the plugin's ``ollama`` client lists
the models of ``ollama_server`` on 127.0.0.1 (``/api/tags``, ``/api/show``)
whenever llm lists models, and chats with it in NDJSON. ``ollama/llama3.2``
is the plugin's alias of ``ollama/llama3.2:latest``.
"""

import json

import ollama_server as oll
import pytest
import stand_in
from conftest import calls, closed_port, moa, record, run_llm, show_json
from ollama_server import OllamaServer

LLAMA, QWEN = "llama3.2:latest", "qwen3:4b"
MIXED = ["-o", "proposers", "ollama/llama3.2,fake-a", "-o", "aggregator", "ollama/qwen3:4b"]


@pytest.fixture
def ollama(monkeypatch, user_path):
    "The stand-in server, with llm-ollama pointed at it."
    with OllamaServer() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.base)
        yield server


def test_a_mixed_run_streams_and_each_member_is_asked(ollama):
    result = moa(*MIXED, "What is rain?")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{QWEN} says: What is rain?\n"
    [proposer] = ollama.calls(LLAMA)
    [aggregator] = ollama.calls(QWEN)
    assert proposer.stream and aggregator.stream
    assert proposer.messages == [{"role": "user", "content": "What is rain?"}]
    system = "\n".join(aggregator.texts("system"))
    assert f"{LLAMA} says: What is rain?" in system and "fake-a answers: What is rain?" in system
    assert [(c["model"], c["status"]) for c in calls(record())] == [
        (f"ollama/{LLAMA}", "ok"),
        ("fake-a", "ok"),
        (f"ollama/{QWEN}", "ok"),
    ]


def test_usage_is_what_the_server_reported(ollama):
    assert moa(*MIXED, "--no-stream", "What is rain?").exit_code == 0
    reported = {r.model: r.usage for r in ollama.calls()}
    assert [r.body["stream"] for r in ollama.calls()] == [False, False]
    for call in calls(record()):
        if call["model"].startswith("ollama/"):
            sent = reported[call["model"].removeprefix("ollama/")]
            assert call["usage"] == {
                "input": sent["prompt_eval_count"],
                "output": sent["eval_count"],
            }
    cost = show_json()["cost"]  # a local model: unpriced, never a hosted model's price
    assert cost["unpriced"] == [f"ollama/{LLAMA}", "fake-a", f"ollama/{QWEN}"]


def test_three_turns_give_every_member_the_history(ollama):
    combo = ["-o", "proposers", "ollama/llama3.2", "-o", "aggregator", "ollama/qwen3:4b"]
    assert moa(*combo, "one").exit_code == 0
    assert run_llm("-c", "two").exit_code == 0
    assert run_llm("-c", "three").exit_code == 0
    for model in (LLAMA, QWEN):
        turns = [[m for m in r.messages if m["role"] != "system"] for r in ollama.calls(model)]
        assert [len(sent) for sent in turns] == [1, 3, 5], model
        assert turns[2][1] == {"role": "assistant", "content": f"{QWEN} says: one"}


def test_async(ollama):
    result = moa(*MIXED, "--async", "What is rain?")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{QWEN} says: What is rain?\n"
    assert len(ollama.calls()) == 2


def test_tools_with_an_ollama_aggregator(ollama):
    def use_the_tool(received):
        if received.body.get("tools") and not received.texts("tool"):
            return stand_in.Behaviour(tool_call=("llm_time", {}))
        return None

    ollama.behave(QWEN, use_the_tool)
    result = moa(*MIXED, "-T", "llm_time", "What time is it?")
    assert result.exit_code == 0, result.output
    [tool_result] = ollama.calls(QWEN)[-1].texts("tool")
    assert "utc_time" in tool_result
    assert result.stdout.startswith(f"{QWEN} says: ")


def test_schema(ollama):
    ollama.behave(None, stand_in.Behaviour(reply='{"answer": "water"}'))
    result = moa(*MIXED, "--schema", "answer str", "What is rain?")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"answer": "water"}
    assert ollama.calls(QWEN)[0].body["format"]["properties"] == {"answer": {"type": "string"}}


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limited_or_overloaded_then_answered(ollama, status):
    ollama.behave(QWEN, oll.error(status, "server busy"), times=1)
    result = moa(*MIXED, "-o", "retries", "1", "q")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{QWEN} says: q\n"
    assert len(ollama.calls(QWEN)) == 2 and record()["aggregator"]["attempts"] == 2


def test_an_unreachable_server_is_one_line_before_any_call(ollama, monkeypatch):
    "llm-ollama lists its models from the server: with Ollama down, they are unknown."
    monkeypatch.setenv("OLLAMA_HOST", closed_port())
    result = moa(*MIXED, "q", ok=False)
    assert result.exit_code == 1
    assert result.output == (
        "Error: Unknown proposer model 'ollama/llama3.2'; "
        "run 'llm models' to list the available models\n"
    )


def test_a_failed_aggregator_keeps_its_proposals(ollama):
    ollama.behave(QWEN, oll.error(500, "model crashed"))
    result = moa(*MIXED, "q", ok=False)
    assert result.exit_code == 1
    assert "model crashed" in result.stderr
    run_id = result.stderr.split("llm moa unfinished ")[1].split()[0]
    kept = json.loads(run_llm("moa", "unfinished", run_id, "--json").output)
    assert [p["text"] for p in kept["run"]["proposer_layers"][0]["proposers"]] == [
        f"{LLAMA} says: q",
        "fake-a answers: q",
    ]


def test_copies_list_the_models_no_more_often_than_one_member(ollama):
    one = ["-o", "proposers", "ollama/llama3.2", "-o", "aggregator", "fake-a", "q"]
    assert moa(*one).exit_code == 0
    listed_for_one = ollama.tags_requests
    ollama.reset()
    copies = ["-o", "proposers", "ollama/llama3.2*3", "-o", "aggregator", "fake-a", "q"]
    result = moa(*copies)
    assert result.exit_code == 0, result.output
    assert len(ollama.calls(LLAMA)) == 3
    assert ollama.tags_requests == listed_for_one == 2  # llm's own listing, and the run's


def test_an_aggregator_that_replied_with_nothing_is_asked_again(ollama):
    ollama.behave(QWEN, stand_in.Behaviour(reply=""), times=1)
    result = moa(*MIXED, "q")  # retries is 0 by default
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{QWEN} says: q\n"
    aggregator = record()["aggregator"]
    assert aggregator["attempts"] == 2 and aggregator["status"] == "ok"
    assert len(ollama.calls(QWEN)) == 2


def test_a_cut_stream_is_truncated(ollama):
    ollama.behave(LLAMA, stand_in.dropped(after=2, how="eof"))
    result = moa(*MIXED, "-o", "retries", "0", "q")
    assert result.exit_code == 0, result.output
    cut, whole = record()["proposer_layers"][0]["proposers"]
    assert cut["truncated"] is True and "truncated" not in whole
    shown = run_llm("moa", "show").output
    assert f"ollama/{LLAMA} · ok" in shown and "truncated" in shown


def test_copies_are_model_objects_of_their_own(ollama):
    "Each copy can run on its own thread: a copy of the plain model object, no hook run again."
    from llm_moa.core.options import config_from
    from llm_moa.core.plan import resolve_members

    config = config_from({"proposers": "ollama/llama3.2*3", "aggregator": "fake-a"})
    proposers, _ = resolve_members(config)
    assert len({id(member.model) for member in proposers}) == 3
    assert {member.model.ollama_name for member in proposers} == {LLAMA}
    assert ollama.tags_requests == 1  # the one listing
