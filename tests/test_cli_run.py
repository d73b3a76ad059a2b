"""A MoA run through the real `llm` CLI: options, layers, prompts, logs, conversations."""

import json

import pytest
from conftest import REFINE, by_role, logged_json, references, run_llm, turns
from fake_models import read_calls


def test_moa_default_works_out_of_the_box(user_path):
    result = run_llm("-m", "moa-default", "Why is the sky blue?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "fake-a answers: Why is the sky blue?\n"
    proposers, aggregators = by_role(read_calls())
    # Self-MoA default: three samples of the default model, then the aggregator
    assert [c["model"] for c in proposers] == ["fake-a"] * 3
    assert [c["model"] for c in aggregators] == ["fake-a"]
    assert all(c["prompt"] == "Why is the sky blue?" for c in proposers)
    # three separate model objects, so no object is driven by two threads
    assert len({c["object"] for c in proposers}) == 3
    assert len(turns(user_path)) == 1


@pytest.mark.parametrize(
    "value, expected",
    [
        ("fake-a,fake-b,fake-c", ["fake-a", "fake-b", "fake-c"]),
        ("alias-b,fake-c", ["fake-b", "fake-c"]),
        ('["fake-b", "fake-b"]', ["fake-b", "fake-b"]),
        ("fake-c*2,fake-a", ["fake-c", "fake-c", "fake-a"]),
        (
            '[{"model": "fake-b"}, {"model": "alias-c", "options": {"temperature": 0.2}}]',
            ["fake-b", "fake-c"],
        ),
        ('{"model": "fake-b", "options": {"temperature": 0.2}}', ["fake-b"]),
    ],
)
def test_proposer_formats(value, expected):
    result = run_llm(
        "-m", "moa-default", "-o", "proposers", value, "-o", "aggregator", "fake-c", "q"
    )
    assert result.exit_code == 0, result.output
    proposers, aggregators = by_role(read_calls())
    assert sorted(c["model"] for c in proposers) == sorted(expected)
    assert [c["model"] for c in aggregators] == ["fake-c"]


def test_aggregator_as_a_json_object():
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a",
        "-o",
        "aggregator",
        '{"model": "fake-c", "options": {"temperature": 0.1}}',
        "q",
    )
    assert result.exit_code == 0, result.output
    _, (aggregator,) = by_role(read_calls())
    assert aggregator["model"] == "fake-c" and aggregator["options"] == {"temperature": 0.1}


def test_per_proposer_options_and_shared_options(user_path):
    proposers = json.dumps(
        [
            {"model": "fake-a", "options": {"temperature": 0.1}},
            {"model": "fake-a", "options": {"temperature": 0.9}},
            {"model": "fake-b"},
        ]
    )
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        proposers,
        "-o",
        "proposer_options",
        '{"temperature": 0.5, "text": "same"}',
        "-o",
        "aggregator_options",
        '{"temperature": 0.0}',
        "q",
    )
    assert result.exit_code == 0, result.output
    proposers, aggregators = by_role(read_calls())
    temps = sorted((c["model"], c["options"]["temperature"]) for c in proposers)
    assert temps == [("fake-a", 0.1), ("fake-a", 0.9), ("fake-b", 0.5)]
    assert all(c["options"]["text"] == "same" for c in proposers)
    assert aggregators[0]["options"] == {"temperature": 0.0}


def test_saved_model_defaults_apply_to_inner_models():
    assert run_llm("models", "options", "set", "fake-b", "temperature", "0.3").exit_code == 0
    result = run_llm(
        "-m", "moa-default", "-o", "proposers", "fake-b", "-o", "aggregator", "fake-b", "q"
    )
    assert result.exit_code == 0, result.output
    assert [c["options"].get("temperature") for c in read_calls()] == [0.3, 0.3]


def test_layers_three_feeds_answers_forward():
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "layers",
        "3",
        "-o",
        "proposers",
        "fake-a,fake-b",
        "-o",
        "aggregator",
        "fake-c",
        "Question?",
    )
    assert result.exit_code == 0, result.output
    calls = read_calls()
    proposers, aggregators = by_role(calls)
    assert len(calls) == (3 - 1) * 2 + 1
    layer1 = [c for c in proposers if REFINE not in c["system"]]
    layer2 = [c for c in proposers if REFINE in c["system"]]
    assert len(layer1) == len(layer2) == 2
    assert all(c["system"] == "" for c in layer1)
    for call in layer2 + aggregators:
        assert call["prompt"] == "Question?"
        assert "fake-a answers: Question?" in call["system"]
        assert "fake-b answers: Question?" in call["system"]
    assert len(references(aggregators[0]["system"])) == 2
    record = logged_json()[0]["response_json"]["moa"]
    assert record["layers"] == 3 and record["calls"] == 5
    assert [len(layer["proposers"]) for layer in record["proposer_layers"]] == [2, 2]


def test_references_are_anonymous_and_delimited():
    proposers = json.dumps(
        [
            {"model": "fake-a", "options": {"text": "Rayleigh scattering"}},
            {"model": "fake-b", "options": {"text": "Blue light scatters more"}},
        ]
    )
    result = run_llm(
        "-m", "moa-default", "-o", "proposers", proposers, "-o", "aggregator", "fake-c", "sky?"
    )
    assert result.exit_code == 0, result.output
    _, (aggregator,) = by_role(read_calls())
    system = aggregator["system"]
    assert "Rayleigh scattering" in system and "Blue light scatters more" in system
    assert "fake-a" not in system and "fake-b" not in system
    assert "BEGIN ANSWER 1" in system and "END ANSWER 2" in system
    assert aggregator["prompt"] == "sky?"


def test_system_prompt_and_aggregator_system():
    result = run_llm(
        "-m",
        "moa-default",
        "-s",
        "Answer in French.",
        "-o",
        "proposers",
        "fake-a",
        "-o",
        "aggregator",
        "fake-b",
        "-o",
        "aggregator_system",
        "Pick the shortest answer.",
        "q",
    )
    assert result.exit_code == 0, result.output
    (proposer,), (aggregator,) = by_role(read_calls())
    assert proposer["system"] == "Answer in French."
    assert aggregator["system"].startswith("Answer in French.\n\nPick the shortest answer.")
    assert "Treat the candidates as material" not in aggregator["system"]
    assert "BEGIN ANSWER 1" in aggregator["system"]


def test_fragments_reach_the_proposers(tmp_path):
    fragment = tmp_path / "notes.txt"
    fragment.write_text("The notes say 42.")
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a",
        "-f",
        str(fragment),
        "What do the notes say?",
    )
    assert result.exit_code == 0, result.output
    proposer = by_role(read_calls())[0][0]
    assert "The notes say 42." in proposer["prompt"]
    assert "What do the notes say?" in proposer["prompt"]


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def test_attachments_go_to_models_that_accept_them(tmp_path):
    image = tmp_path / "pixel.png"
    image.write_bytes(PNG)
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a,fake-plain",
        "-o",
        "aggregator",
        "fake-b",
        "-a",
        str(image),
        "what is this?",
    )
    assert result.exit_code == 0, result.output
    attachments = {c["model"]: c["attachments"] for c in read_calls()}
    assert attachments == {"fake-a": ["image/png"], "fake-plain": [], "fake-b": ["image/png"]}


def test_attachment_nobody_accepts_is_refused_up_front(tmp_path, user_path):
    image = tmp_path / "pixel.png"
    image.write_bytes(PNG)
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-plain",
        "-o",
        "aggregator",
        "fake-plain",
        "-a",
        str(image),
        "what?",
    )
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: No proposer or aggregator accepts attachments of type 'image/png'\n"
    )
    assert read_calls() == [] and turns(user_path) == []


def test_continue_conversation_passes_history(user_path):
    first = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a,fake-b",
        "-o",
        "aggregator",
        "fake-c",
        "-s",
        "Be brief.",
        "Why is the sky blue?",
    )
    assert first.exit_code == 0, first.output
    second = run_llm("-c", "and at sunset?")
    assert second.exit_code == 0, second.output
    rows = turns(user_path)
    assert [row["model"] for row in rows] == ["moa-default", "moa-default"]
    assert len({row["thread_id"] for row in rows}) == 1
    second_calls = read_calls()[3:]
    # -c keeps the combo of the conversation: the same proposers and aggregator
    assert sorted(c["model"] for c in second_calls) == ["fake-a", "fake-b", "fake-c"]
    for call in second_calls:
        roles = [(m["role"], m["text"]) for m in call["messages"]]
        assert roles[1:] == [
            ("user", "Why is the sky blue?"),
            ("assistant", "fake-c answers: Why is the sky blue?"),
            ("user", "and at sunset?"),
        ]
        assert roles[0][0] == "system" and roles[0][1].startswith("Be brief.")
        # hidden proposals are never part of the history
        assert all("fake-a answers" not in text for _, text in roles[1:])
    # llm logs -c follows the MoA conversation
    current = run_llm("logs", "-c", "--json")
    assert [entry["model"] for entry in json.loads(current.output)] == [
        "moa-default",
        "moa-default",
    ]


def test_continue_keeps_the_combo_over_saved_defaults():
    assert run_llm("models", "options", "set", "moa-default", "aggregator", "fake-b").exit_code == 0
    first = run_llm(
        "-m", "moa-default", "-o", "proposers", "fake-a", "-o", "aggregator", "fake-c", "one"
    )
    assert first.stdout == "fake-c answers: one\n"
    assert run_llm("-c", "two").stdout == "fake-c answers: two\n"  # not the saved fake-b
    assert run_llm("-c", "-o", "aggregator", "fake-a", "three").stdout == "fake-a answers: three\n"


def test_proposers_run_concurrently():
    proposers = json.dumps(
        [{"model": m, "options": {"delay": 1.0}} for m in ("fake-a", "fake-b", "fake-c")]
    )
    result = run_llm(
        "-m", "moa-default", "-o", "proposers", proposers, "-o", "aggregator", "fake-a", "q"
    )
    assert result.exit_code == 0, result.output
    # timed by the run itself, so the host's own start-up and logging do not count
    proposers, _ = by_role(read_calls())
    assert max(c["started"] for c in proposers) < min(c["ended"] for c in proposers)


def test_shared_model_object_is_never_driven_by_two_threads():
    # fake-shared's plugin hands out the same object every time, and raises if
    # two threads drive it at once
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-shared*3",
        "-o",
        "aggregator",
        "fake-shared",
        "-o",
        "proposer_options",
        '{"delay": 0.2}',
        "q",
    )
    assert result.exit_code == 0, result.output
    calls = read_calls()
    assert [c["status"] for c in calls] == ["ok"] * 4
    spans = sorted((c["started"], c["ended"]) for c in calls)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))


def test_failed_proposer_is_left_out_and_recorded(user_path):
    proposers = json.dumps(
        [{"model": "fake-a"}, {"model": "fake-b", "options": {"fail": "provider exploded"}}]
    )
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        proposers,
        "-o",
        "aggregator",
        "fake-c",
        "-o",
        "retries",
        "0",
        "q",
    )
    assert result.exit_code == 0, result.output
    _, (aggregator,) = by_role(read_calls())
    assert len(references(aggregator["system"])) == 1
    layer = logged_json()[0]["response_json"]["moa"]["proposer_layers"][0]["proposers"]
    assert [(p["model"], p["status"]) for p in layer] == [("fake-a", "ok"), ("fake-b", "failed")]
    assert layer[1]["error"] == "provider exploded"


def test_all_proposers_failing_is_an_error_with_one_line_each(user_path):
    proposers = json.dumps(
        [
            {"model": "fake-b", "options": {"fail": "boom"}},
            {"model": "fake-c", "options": {"fail": "down", "status": 503}},
        ]
    )
    result = run_llm("-m", "moa-default", "-o", "proposers", proposers, "-o", "retries", "0", "q")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: No proposer answered in layer 1 (2 calls failed):"
    assert lines[1] == "  fake-b (proposer 1): boom"
    assert lines[2] == "  fake-c (proposer 2): down"
    assert turns(user_path) == []
    assert by_role(read_calls())[1] == []


@pytest.mark.parametrize("role", ["proposers", "aggregator"])
def test_a_missing_key_is_found_before_any_call(role, user_path):
    other = "aggregator" if role == "proposers" else "proposers"
    result = run_llm("-m", "moa-default", "-o", role, "fake-key", "-o", other, "fake-a", "q")
    assert result.exit_code == 1
    singular = "proposer" if role == "proposers" else "aggregator"
    assert result.stderr == (
        f"Error: {singular} fake-key: No key found - add one using 'llm keys set fakekey' "
        "or set the FAKE_API_KEY environment variable\n"
    )
    assert read_calls() == [] and turns(user_path) == []


def test_schema_final_answer_is_json():
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a,fake-plain",
        "-o",
        "aggregator",
        "fake-b",
        "--schema",
        "answer str",
        "q",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"answer": "fake-b says hi"}
    schemas = {c["model"]: bool(c["schema"]) for c in read_calls()}
    # proposers that support schemas answer in it; the others answer freely
    assert schemas == {"fake-a": True, "fake-plain": False, "fake-b": True}


def test_schema_needs_a_schema_capable_aggregator(user_path):
    result = run_llm(
        "-m", "moa-default", "-o", "aggregator", "fake-plain", "--schema", "answer str", "q"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: aggregator fake-plain does not support --schema")
    assert read_calls() == [] and turns(user_path) == []


def test_tools_are_refused_by_llm():
    result = run_llm("-m", "moa-default", "-T", "llm_version", "q")
    assert result.exit_code == 1
    assert "does not support tools" in result.stderr


def test_usage_totals_and_breakdown(user_path):
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a,fake-b",
        "-o",
        "aggregator",
        "fake-c",
        "-u",
        "one two",
    )
    assert result.exit_code == 0, result.output
    calls = read_calls()
    row = turns(user_path)[0]
    record = logged_json()[0]["response_json"]["moa"]
    inputs = [p["usage"]["input"] for p in record["proposer_layers"][0]["proposers"]]
    inputs.append(record["aggregator"]["usage"]["input"])
    assert row["input_tokens"] == sum(inputs)
    assert row["output_tokens"] == 4 + 4 + 4
    details = json.loads(row["token_details"])
    assert details["moa_calls"] == len(calls) == 3
    assert details["moa_models"]["fake-c"]["calls"] == 1
    assert "Token usage:" in result.stderr


def test_response_json_holds_the_whole_run(user_path):
    proposers = json.dumps(
        [{"model": "alias-a", "options": {"temperature": 0.7}}, {"model": "fake-b"}]
    )
    result = run_llm(
        "-m", "moa-default", "-o", "proposers", proposers, "-o", "aggregator", "fake-c", "q"
    )
    assert result.exit_code == 0, result.output
    run = logged_json()[0]["response_json"]["moa"]
    first = run["proposer_layers"][0]["proposers"][0]
    assert first["model"] == "fake-a" and first["requested"] == "alias-a"
    assert first["options"] == {"temperature": 0.7}
    assert first["text"] == "fake-a answers: q"
    assert first["status"] == "ok" and first["duration_ms"] >= 0
    assert first["usage"] == {"input": 1, "output": 3}
    assert run["aggregator"]["model"] == "fake-c"
    assert run["aggregator"]["text"] == "fake-c answers: q"
    assert {"duration_ms", "usage", "first_token_ms"} <= set(run["aggregator"])


def test_no_key_reaches_logs_or_output(user_path, monkeypatch):
    secret = "sk-test-" + "x" * 32
    assert run_llm("keys", "set", "fakekey", "--value", secret).exit_code == 0
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-key,fake-a",
        "-o",
        "aggregator",
        "fake-key",
        "q",
    )
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    dump = (user_path / "logs.db").read_bytes()
    assert secret.encode() not in dump


def test_moa_model_cannot_be_a_member(user_path):
    result = run_llm("-m", "moa-default", "-o", "proposers", "moa-default", "q")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: proposer 'moa-default' is itself a MoA model")
    (user_path / "default_model.txt").write_text("moa-default")
    result = run_llm("-m", "moa-default", "q")
    assert result.exit_code == 1
    assert "it is your default model" in result.stderr


def test_models_options_lists_every_option():
    result = run_llm("models", "--options", "-m", "moa-default")
    assert result.exit_code == 0
    for name in (
        "proposers",
        "aggregator",
        "layers",
        "proposer_options",
        "aggregator_options",
        "aggregator_system",
        "timeout",
        "retries",
        "min_proposers",
        "max_concurrency",
        "wait",
    ):
        assert f"    {name}: " in result.output


def test_llm_chat_keeps_history_and_options():
    result = run_llm(
        "chat",
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-b,fake-c",
        "-o",
        "aggregator",
        "fake-a",
        input="hello\nand again\nquit\n",
    )
    assert result.exit_code == 0, result.output
    assert "fake-a answers: hello" in result.output and "fake-a answers: and again" in result.output
    calls = read_calls()
    assert sorted(c["model"] for c in calls[3:]) == ["fake-a", "fake-b", "fake-c"]
    roles = [(m["role"], m["text"]) for m in calls[-1]["messages"]][1:]
    assert roles == [
        ("user", "hello"),
        ("assistant", "fake-a answers: hello"),
        ("user", "and again"),
    ]


def test_async_through_the_cli(user_path):
    result = run_llm(
        "--async",
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a,fake-b",
        "-o",
        "aggregator",
        "fake-c",
        "async question",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "fake-c answers: async question\n"
    assert len(turns(user_path)) == 1
    assert logged_json()[0]["response_json"]["moa"]["calls"] == 3


def test_a_degraded_run_says_what_is_missing_on_stderr(user_path):
    proposers = json.dumps(
        [{"model": "fake-a"}, {"model": "fake-b", "options": {"fail": "HTTP 429", "status": 429}}]
    )
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        proposers,
        "-o",
        "aggregator",
        "fake-c",
        "-o",
        "retries",
        "0",
        "q",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "fake-c answers: q\n"  # the answer alone, byte for byte
    assert result.stderr == "moa: 1 of 2 proposers answered (fake-b: HTTP 429)\n"
    assert logged_json()[0]["response_json"]["moa"]["partial"] == "fake-b: HTTP 429"


def test_a_whole_run_says_nothing_more():
    result = run_llm("-m", "moa-default", "-o", "proposers", "fake-a,fake-b", "q")
    assert result.exit_code == 0 and result.stderr == ""
    assert "partial" not in logged_json()[0]["response_json"]["moa"]


def test_the_combo_survives_any_number_of_turns():
    first = run_llm(
        "-m", "moa-default", "-o", "proposers", "fake-b,fake-c", "-o", "aggregator", "fake-c", "one"
    )
    assert first.exit_code == 0, first.output
    for word in ("two", "three", "four"):
        assert run_llm("-c", word).stdout == f"fake-c answers: {word}\n"
    calls = read_calls()[-3:]  # the fourth turn's calls
    assert sorted(c["model"] for c in calls) == ["fake-b", "fake-c", "fake-c"]
    logged = logged_json(4)
    assert all(row["options_json"]["proposers"] == ["fake-b", "fake-c"] for row in logged)


def test_an_explicit_option_equal_to_a_saved_default_wins_on_continue():
    assert run_llm("models", "options", "set", "moa-default", "aggregator", "fake-b").exit_code == 0
    assert (
        run_llm(
            "-m", "moa-default", "-o", "proposers", "fake-a", "-o", "aggregator", "fake-c", "one"
        ).exit_code
        == 0
    )
    # -o aggregator fake-b equals the saved default, but it was typed: it wins over the conversation's fake-c
    assert run_llm("-c", "-o", "aggregator", "fake-b", "two").stdout == "fake-b answers: two\n"
    assert (
        run_llm("-c", "three").stdout == "fake-b answers: three\n"
    )  # and what ran is what continues
    assert [row["options_json"]["aggregator"] for row in logged_json(3)] == [
        "fake-c",
        "fake-b",
        "fake-b",
    ]
