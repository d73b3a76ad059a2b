"""MoA through llm's built-in OpenAI plugin, against a real OpenAI-compatible server.

Nothing of llm is mocked: ``srv-a``, ``srv-b`` and ``srv-c`` are registered in
``extra-openai-models.yaml`` (see ``openai_fixtures``), the key is set with
``llm keys set``, and every call goes over HTTP to ``openai_server`` on
127.0.0.1, which records what it received.

The defects of issue 13 (the combination lost on the third turn, usage summed
as if complete, max_tokens redacted, errors inside a stream retried, truncated
streams recorded as clean) each have a test here that failed before the fix.
"""

import json

import llm
import openai_server as srv
import pytest
from conftest import calls, moa, record, run_llm, turns
from openai_fixtures import KEY

COMBO = ["-o", "proposers", "srv-a,srv-b", "-o", "aggregator", "srv-c"]


def by_model(server):
    "The received requests, one per model (each model called once)."
    calls = server.calls()
    found = {r.model: r for r in calls}
    assert len(found) == len(calls), [r.model for r in calls]
    return found


def totals(requests):
    "The token counts the server computed for these requests, summed."
    return (
        sum(r.usage["prompt_tokens"] for r in requests),
        sum(r.usage["completion_tokens"] for r in requests),
    )


# --- what works ---------------------------------------------------------------


def test_streamed_run_answers(srv_models, user_path):
    result = moa(*COMBO, "What is rain?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "srv-c says: What is rain?\n"

    sent = by_model(srv_models)
    assert sorted(sent) == ["srv-a", "srv-b", "srv-c"]
    for request in sent.values():
        assert request.stream is True
        assert request.sent_key(KEY)
        assert request.last_user_text == "What is rain?"
    # the aggregator sees both proposals, and the proposers see none
    aggregator_system = "\n".join(sent["srv-c"].texts("system"))
    assert "srv-a says: What is rain?" in aggregator_system
    assert "srv-b says: What is rain?" in aggregator_system
    assert sent["srv-a"].texts("system") == sent["srv-b"].texts("system") == []

    run = record()
    assert [(c["model"], c["status"], c["text"]) for c in calls(run)] == [
        ("srv-a", "ok", "srv-a says: What is rain?"),
        ("srv-b", "ok", "srv-b says: What is rain?"),
        ("srv-c", "ok", "srv-c says: What is rain?"),
    ]
    [turn] = turns(user_path)
    assert turn["model"] == "moa-default"


def test_no_stream_run_answers(srv_models):
    result = moa(*COMBO, "--no-stream", "What is rain?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "srv-c says: What is rain?\n"
    assert sorted(by_model(srv_models)) == ["srv-a", "srv-b", "srv-c"]


def test_async_run_answers(srv_models, user_path):
    result = moa(*COMBO, "--async", "What is rain?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "srv-c says: What is rain?\n"
    assert sorted(by_model(srv_models)) == ["srv-a", "srv-b", "srv-c"]
    assert len(turns(user_path)) == 1


def test_system_prompt_reaches_every_call(srv_models):
    result = moa(*COMBO, "-s", "Answer in French.", "What is rain?")
    assert result.exit_code == 0, result.output
    for model, request in by_model(srv_models).items():
        assert "Answer in French." in "\n".join(request.texts("system")), model
        assert request.last_user_text == "What is rain?"


def test_member_options_reach_the_server(srv_models):
    proposers = json.dumps([{"model": "srv-a", "options": {"temperature": 0.2}}, "srv-b"])
    result = moa(
        "-o",
        "proposers",
        proposers,
        "-o",
        "aggregator",
        "srv-c",
        "-o",
        "proposer_options",
        '{"top_p": 0.9}',
        "-o",
        "aggregator_options",
        '{"max_tokens": 50, "temperature": 0.1}',
        "q",
    )
    assert result.exit_code == 0, result.output
    sent = by_model(srv_models)
    assert sent["srv-a"].body["temperature"] == 0.2
    assert "temperature" not in sent["srv-b"].body
    assert sent["srv-a"].body["top_p"] == sent["srv-b"].body["top_p"] == 0.9
    assert "max_tokens" not in sent["srv-a"].body
    assert sent["srv-c"].body["max_tokens"] == 50
    assert sent["srv-c"].body["temperature"] == 0.1
    assert "top_p" not in sent["srv-c"].body
    run = record()
    assert run["proposer_layers"][0]["proposers"][0]["options"]["temperature"] == 0.2


def test_python_api(srv_models):
    model = llm.get_model("moa-default")
    response = model.prompt("What is rain?", proposers="srv-a,srv-b", aggregator="srv-c")
    assert response.text() == "srv-c says: What is rain?"
    assert sorted(by_model(srv_models)) == ["srv-a", "srv-b", "srv-c"]
    moa_record = response.response_json["moa"]
    assert [c["status"] for c in calls(moa_record)] == ["ok"] * 3


@pytest.mark.asyncio
async def test_python_async_api(srv_models):
    model = llm.get_async_model("moa-default")
    response = model.prompt("What is rain?", proposers="srv-a,srv-b", aggregator="srv-c")
    assert await response.text() == "srv-c says: What is rain?"
    assert sorted(by_model(srv_models)) == ["srv-a", "srv-b", "srv-c"]


def test_server_error_on_one_proposer_still_answers(srv_models):
    srv_models.behave("srv-a", srv.error(500))
    result = moa(*COMBO, "-o", "retries", "0", "q")
    assert result.exit_code == 0, result.output
    assert result.stdout == "srv-c says: q\n"
    [a, b] = record()["proposer_layers"][0]["proposers"]
    assert (a["status"], b["status"]) == ("failed", "ok")
    assert "500" in a["error"]
    [aggregator_request] = srv_models.calls("srv-c")
    system = "\n".join(aggregator_request.texts("system"))
    assert "srv-b says: q" in system and "srv-a says" not in system


def test_rate_limited_proposer_is_answered_after_retry_after(srv_models):
    srv_models.behave("srv-a", srv.rate_limited(retry_after="0.1"), times=1)
    result = moa(*COMBO, "q")
    assert result.exit_code == 0, result.output
    assert len(srv_models.calls("srv-a")) == 2
    assert record()["proposer_layers"][0]["proposers"][0]["status"] == "ok"


def test_slow_proposer_is_abandoned_at_the_timeout(srv_models):
    srv_models.behave("srv-a", srv.slow(0.5, reply=" ".join(["slow"] * 20)))
    result = moa(*COMBO, "-o", "timeout", "1", "q")
    assert result.exit_code == 0, result.output
    assert result.stdout == "srv-c says: q\n"
    [a, b] = record()["proposer_layers"][0]["proposers"]
    assert (a["status"], b["status"]) == ("timeout", "ok")


def test_proposer_whose_connection_drops_is_retried(srv_models):
    srv_models.behave("srv-a", srv.dropped(after=2, how="reset"), times=1)
    result = moa(*COMBO, "-o", "retries", "1", "q")  # the SDK retries only before the reply starts
    assert result.exit_code == 0, result.output
    [a, _] = record()["proposer_layers"][0]["proposers"]
    assert a["status"] == "ok" and a["text"] == "srv-a says: q"
    assert a["attempts"] == 2 and len(srv_models.calls("srv-a")) == 2


def test_aggregator_whose_connection_drops_fails_the_run(srv_models, user_path):
    srv_models.behave("srv-c", srv.dropped(after=2, how="reset", reply="one two three four"))
    result = moa(*COMBO, "q", ok=False)
    assert result.exit_code == 1
    assert result.stdout.startswith("one two")  # what was shown stays shown
    assert "srv-c (aggregator 1)" in result.stderr
    assert len(srv_models.calls("srv-c")) == 1  # part of it was shown: not retried
    assert turns(user_path) == []


def test_streamed_usage_is_summed_when_the_server_reports_it(srv_models, user_path):
    srv_models.stream_usage = "requested"  # llm asks with stream_options.include_usage
    result = moa(*COMBO, "-u", "q")
    assert result.exit_code == 0, result.output
    requests = srv_models.calls()
    assert all(r.body["stream_options"] == {"include_usage": True} for r in requests)
    total_in, total_out = totals(requests)
    assert f"Token usage: {total_in:,} input, {total_out:,} output" in result.stderr
    [turn] = turns(user_path)
    assert (turn["input_tokens"], turn["output_tokens"]) == (total_in, total_out)


def test_errors_that_retrying_cannot_fix_are_tried_once(srv_models):
    "A context-length error on the aggregator, a 401 and a 400 on proposers: HTTP statuses."
    srv_models.behave("srv-c", srv.context_length_error())
    result = moa(*COMBO, "-o", "retries", "3", "q", ok=False)
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "maximum context length" in result.stderr
    assert len(srv_models.calls("srv-c")) == 1

    srv_models.reset()
    srv_models.behave("srv-a", srv.error(401))
    srv_models.behave("srv-b", srv.error(400))
    result = moa(
        "-o",
        "proposers",
        "srv-a,srv-b,srv-c",
        "-o",
        "aggregator",
        "srv-c",
        "-o",
        "retries",
        "3",
        "q",
    )
    assert result.exit_code == 0, result.output
    assert len(srv_models.calls("srv-a")) == len(srv_models.calls("srv-b")) == 1
    [a, b, c] = record()["proposer_layers"][0]["proposers"]
    assert (a["status"], b["status"], c["status"]) == ("failed", "failed", "ok")
    assert "401" in a["error"] and "400" in b["error"]


def test_key_reaches_the_server_and_never_the_logs(srv_models):
    # A careless server that quotes the key back in its error message.
    srv_models.behave(
        "srv-b",
        lambda request: srv.error(
            401, message=f"Incorrect API key provided: {KEY}" if request.sent_key(KEY) else "no key"
        ),
    )
    result = moa(*COMBO, "-o", "retries", "0", "q")
    assert result.exit_code == 0, result.output
    assert all(r.had_authorization and r.sent_key(KEY) for r in srv_models.calls())
    assert KEY not in result.output
    [_, b] = record()["proposer_layers"][0]["proposers"]
    assert b["status"] == "failed" and "Incorrect API key provided" in b["error"]
    for command in (["logs", "--json"], ["logs"], ["logs", "-u"]):
        shown = run_llm(*command)
        assert shown.exit_code == 0, shown.output
        assert KEY not in shown.output


def test_second_turn_keeps_the_combination_and_history(srv_models):
    assert moa(*COMBO, "q1").exit_code == 0
    srv_models.reset()
    result = run_llm("-c", "q2")
    assert result.exit_code == 0, result.output
    assert result.stdout == "srv-c says: q2\n"
    sent = by_model(srv_models)
    assert sorted(sent) == ["srv-a", "srv-b", "srv-c"]
    for request in sent.values():
        assert request.texts("user") == ["q1", "q2"]
        assert request.texts("assistant") == ["srv-c says: q1"]


# --- issue 13: known defects, pinned until fixed ---------------------------------


def test_third_turn_keeps_the_combination(srv_models):
    assert moa(*COMBO, "q1").exit_code == 0
    assert run_llm("-c", "q2").exit_code == 0
    srv_models.reset()
    result = run_llm("-c", "q3")
    assert result.exit_code == 0, result.output
    assert sorted(srv_models.models_called()) == ["srv-a", "srv-b", "srv-c"]
    assert result.stdout == "srv-c says: q3\n"


def test_third_turn_keeps_the_combination_in_python(srv_models):
    conversation = llm.get_model("moa-default").conversation()
    assert (
        conversation.prompt("q1", proposers="srv-a,srv-b", aggregator="srv-c").text()
        == "srv-c says: q1"
    )
    assert conversation.prompt("q2").text() == "srv-c says: q2"
    srv_models.reset()
    assert conversation.prompt("q3").text() == "srv-c says: q3"
    assert sorted(srv_models.models_called()) == ["srv-a", "srv-b", "srv-c"]


def test_no_stream_usage_counts_every_call(srv_models, user_path):
    # The server reports usage only on replies that are not streamed.
    result = moa(*COMBO, "--no-stream", "-u", "q")
    assert result.exit_code == 0, result.output
    requests = srv_models.calls()
    assert len(requests) == 3
    assert [r.stream for r in requests] == [False] * 3
    total_in, total_out = totals(requests)
    assert f"Token usage: {total_in:,} input, {total_out:,} output" in result.stderr
    [turn] = turns(user_path)
    assert (turn["input_tokens"], turn["output_tokens"]) == (total_in, total_out)


def test_unreported_streamed_usage_is_marked_unknown(srv_models):
    srv_models.behave("srv-a", srv.Behaviour(stream_usage="always"))
    srv_models.behave("srv-c", srv.Behaviour(stream_usage="always"))
    # srv-b streams without usage (the server's default)
    result = moa(*COMBO, "-u", "q")
    assert result.exit_code == 0, result.output
    usage_line = [line for line in result.stderr.splitlines() if line.startswith("Token usage")]
    assert usage_line and "unknown" in usage_line[0]
    records = {c["model"]: json.dumps(c) for c in calls(record())}
    assert "unknown" in records["srv-b"]
    assert "unknown" not in records["srv-a"] and "unknown" not in records["srv-c"]


def test_max_tokens_is_recorded(srv_models):
    result = moa(
        *COMBO,
        "-o",
        "aggregator_options",
        '{"max_tokens": 50}',
        "-o",
        "proposer_options",
        '{"max_tokens": 40}',
        "q",
    )
    assert result.exit_code == 0, result.output
    run = record()
    assert run["aggregator"]["options"]["max_tokens"] == 50
    assert [p["options"]["max_tokens"] for p in run["proposer_layers"][0]["proposers"]] == [40, 40]


@pytest.mark.parametrize(
    "model, behaviour, expected",
    [
        ("srv-c", srv.context_length_error(error_in_stream=True), "maximum context length"),
        (
            "srv-a",
            srv.error(400, message="Invalid value for 'temperature'.", error_in_stream=True),
            "Invalid value for 'temperature'",
        ),
    ],
)
def test_error_events_in_a_stream_are_not_retried(srv_models, model, behaviour, expected):
    # Some servers report a failure as a `data: {"error": ...}` event of a 200
    # stream; the OpenAI SDK raises it as an APIError without a status code.
    srv_models.behave(model, behaviour)
    result = moa(*COMBO, "-o", "retries", "3", "q", ok=False)
    if model == "srv-c":
        assert result.exit_code == 1
        assert "Error:" in result.stderr and expected in result.stderr
    else:
        assert result.exit_code == 0, result.output
        assert expected in record()["proposer_layers"][0]["proposers"][0]["error"]
    assert len(srv_models.calls(model)) == 1


@pytest.mark.parametrize("how", ["eof", "done"])
def test_stream_ending_without_finish_reason_is_recorded_as_truncated(srv_models, how):
    # eof: the body just ends; done: [DONE] comes with no finish_reason before it
    srv_models.behave("srv-a", srv.dropped(after=2, how=how))
    result = moa(*COMBO, "-o", "retries", "0", "q")
    assert result.exit_code == 0, result.output
    [a, b] = record()["proposer_layers"][0]["proposers"]
    assert "truncated" in json.dumps(a)
    assert "truncated" not in json.dumps(b)
