"""`llm moa plan` and `llm moa eval --plan` through the real CLI: nothing is
called or logged, every problem is listed at once in a run's own words, the
call list is the one a real run of the same command then makes, and the
output estimate comes from the user's own history."""

import json

import pytest
from conftest import logged_json, run_llm, saying, turns
from fake_models import read_calls

from llm_moa.core.record import StoredRun


def plan(*args):
    "The plan as --json shows it; the command's exit code too."
    result = run_llm("moa", "plan", *args, "--json")
    return result.exit_code, json.loads(result.stdout)


def planned(shown, conditional=True):
    "The calls a plan lists as (layer or 'agg', model, options), fallbacks left out."
    return [
        (
            "agg" if call["role"] in ("aggregator",) else f"L{call['layer']}",
            call["model"],
            {key: entry["value"] for key, entry in call["options"].items()},
        )
        for call in shown["calls"]
        if not call["role"].startswith("fallback") and (conditional or call["condition"] is None)
    ]


def ran():
    "The calls the last logged run made, in the same form, from its record."
    record = StoredRun.parse(logged_json()[0]["response_json"]["moa"])
    return [(label, call.model, call.options) for label, call in record.labelled_calls()]


def run_then_compare(args, conditional=True):
    "Plan, check nothing was called or logged, then run the same command and compare."
    code, shown = plan(*args, "Why is the sky blue?")
    assert code == 0, shown["problems"]
    assert read_calls() == []  # no fake was called
    result = run_llm("-m", shown["model"], *args, "Why is the sky blue?")
    assert result.exit_code == 0, result.output
    assert ran() == planned(shown, conditional)
    made = sorted((c["model"], json.dumps(c["options"], sort_keys=True)) for c in read_calls())
    listed = sorted((m, json.dumps(o, sort_keys=True)) for _, m, o in planned(shown, conditional))
    assert made == listed  # what the fakes received, call for call
    return shown


def test_plan_calls_nothing_logs_nothing_and_shows_every_section(user_path):
    result = run_llm(
        "moa", "plan", "-o", "proposers", "alias-a,fake-b", "-o", "aggregator", "fake-c", "hi"
    )
    assert result.exit_code == 0, result.output
    assert read_calls() == [] and turns(user_path) == []
    for section in ("## Options", "## Calls", "## Members", "## Estimate", "## Problems"):
        assert section in result.stdout
    assert "alias-a -> fake-a" in result.stdout  # the alias typed and the model it resolves to
    assert "nothing is called, nothing is logged" in result.stdout
    assert "None: ready to run." in result.stdout


def test_plan_reads_the_prompt_from_stdin():
    result = run_llm("moa", "plan", "--json", input="a prompt on stdin")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["prompt"] == "a prompt on stdin"
    assert [c["model"] for c in shown["calls"]] == ["fake-a"] * 4  # Self-MoA on the default


def test_plain_synthesis_matches_a_real_run():
    run_then_compare(["-o", "proposers", "fake-a,fake-b", "-o", "aggregator", "fake-c"])


def test_three_layers_match_a_real_run():
    shown = run_then_compare(["-o", "proposers", "fake-a,fake-b", "-o", "layers", "3"])
    assert [c["layer"] for c in shown["calls"]] == [1, 1, 2, 2, 3]


def test_a_preset_with_o_and_saved_defaults_matches_a_real_run_and_says_where_each_came_from():
    assert run_llm(
        "moa", "save", "panel", "-o", "proposers", '[{"model": "fake-a", "options": {"temperature": 0.1}}, "fake-b"]',
        "-o", "proposer_options", '{"chunks": 2}',
    ).exit_code == 0  # fmt: skip
    assert run_llm("models", "options", "set", "moa-panel", "aggregator", "fake-c").exit_code == 0
    assert run_llm("models", "options", "set", "fake-c", "temperature", "0.7").exit_code == 0
    code, shown = plan("-m", "moa-panel", "-o", "aggregator_options", '{"chunks": 3}', "Why?")
    assert code == 0, shown["problems"]
    assert {k: v["from"] for k, v in shown["options"].items()} == {
        "proposers": "preset",
        "proposer_options": "preset",
        "aggregator": "saved default",
        "aggregator_options": "-o",
    }
    first, second, aggregator = shown["calls"]
    assert first["options"] == {
        "temperature": {"value": 0.1, "from": "per-member (preset)"},
        "chunks": {"value": 2, "from": "proposer_options (preset)"},
    }
    assert second["options"] == {"chunks": {"value": 2, "from": "proposer_options (preset)"}}
    assert aggregator["options"] == {
        "temperature": {"value": 0.7, "from": "saved default"},
        "chunks": {"value": 3, "from": "aggregator_options (-o)"},
    }
    assert read_calls() == []
    result = run_llm("-m", "moa-panel", "-o", "aggregator_options", '{"chunks": 3}', "Why?")
    assert result.exit_code == 0, result.output
    assert ran() == planned(shown)


def test_cascade_lists_the_conditional_calls_and_matches_both_outcomes():
    code, shown = plan("-o", "proposers", saying("x", "x", "y"), "-o", "cascade", "2", "q")
    assert [c["condition"] for c in shown["calls"]] == [
        None,
        None,
        "if the first 2 disagree",
        "if the first 2 disagree",
    ]
    assert shown["estimate"]["calls"] == {"fewest": 2, "most": 4}
    # the first two agree: the run makes only the calls that always happen
    run_then_compare(["-o", "proposers", saying("x", "x", "y"), "-o", "cascade", "2"], False)


def test_cascade_that_escalates_matches_the_whole_list():
    run_then_compare(["-o", "proposers", saying("x", "y", "z"), "-o", "cascade", "2"])


def test_vote_calls_the_aggregator_only_on_a_tie():
    args = ["-o", "proposers", saying("x", "x", "y"), "-o", "aggregate", "vote"]
    code, shown = plan(*args, "q")
    assert shown["calls"][-1]["condition"] == "only on a tie"
    run_then_compare(args, conditional=False)  # no tie: no aggregator


def test_a_tied_vote_matches_the_whole_list():
    run_then_compare(["-o", "proposers", saying("x", "y"), "-o", "aggregate", "vote"])


def test_window_lists_each_step_and_matches_a_real_run():
    shown = run_then_compare(
        [
            "-o",
            "proposers",
            "fake-a,fake-b,fake-c",
            "-o",
            "aggregator",
            "fake-b",
            "-o",
            "window",
            "2",
        ]
    )
    assert [c["role"] for c in shown["calls"]][-2:] == ["aggregator", "aggregator"]


def test_fallback_and_tool_rounds_are_listed_but_not_counted():
    code, shown = plan(
        "-o", "proposers", "fake-tooler", "-o", "aggregator", "fake-tooler,fake-tooler-2",
        "-T", "llm_time", "q",
    )  # fmt: skip
    assert code == 0, shown["problems"]
    assert shown["calls"][-1]["role"] == "fallback 1"
    assert shown["estimate"]["calls"]["most"] == 2
    assert "each tool round costs 1 call (the aggregator alone)" in " ".join(shown["notes"])
    # the proposers are told about the tools, as in a run
    assert read_calls() == []


def test_every_problem_is_listed_at_once_in_a_runs_own_words(user_path):
    args = ["-o", "proposers", "nope,fake-key", "-o", "aggregator", "fake-a", "-T", "llm_time"]
    result = run_llm("moa", "plan", *args, "hi")
    assert result.exit_code == 1
    problems = result.stdout.split("## Problems\n\n")[1].splitlines()
    assert problems == [
        "- Unknown proposer model 'nope'; run 'llm models' to list the available models",
        "- aggregator fake-a does not support tools; choose one that does (llm models --tools)",
        "- proposer fake-key: No key found - add one using 'llm keys set fakekey' or set the "
        "FAKE_API_KEY environment variable",
    ]  # in the order a run checks them
    assert read_calls() == [] and turns(user_path) == []
    # a run says the first of them, in the same words
    run = run_llm("-m", "moa-default", *args, "hi")
    assert run.exit_code == 1 and problems[0][2:] in run.output


def test_bad_moa_options_are_problems_and_the_rest_is_still_planned():
    code, shown = plan("-o", "layers", "1", "-o", "timeout", "-3", "-o", "proposers", "fake-b", "q")
    assert code == 1
    assert shown["problems"] == [
        "layers: Input should be greater than or equal to 2, got '1'",
        "timeout: Input should be greater than or equal to 0, got '-3'",
    ]
    assert [c["model"] for c in shown["calls"]] == ["fake-b", "fake-a"]


def test_keys_are_named_by_where_they_are_found_never_shown(monkeypatch, user_path):
    assert run_llm("keys", "set", "fakekey", "--value", "sk-secret-1234567890").exit_code == 0
    result = run_llm("moa", "plan", "-o", "proposers", "fake-key", "q")
    assert result.exit_code == 0, result.output
    assert "keys.json (fakekey)" in result.stdout and "sk-secret" not in result.stdout
    (user_path / "keys.json").write_text("{}")
    monkeypatch.setenv("FAKE_API_KEY", "sk-other-1234567890")
    code, shown = plan("-o", "proposers", "fake-key", "q")
    assert code == 0 and shown["members"][0]["key"] == "$FAKE_API_KEY"
    assert "sk-other" not in json.dumps(shown)


def test_schema_attachment_and_tool_problems_are_listed_together(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("plain text")
    code, shown = plan(
        "-o", "proposers", "fake-a", "-o", "aggregator", "fake-plain", "--schema", "name, age int",
        "-a", str(notes), "-T", "no_such_tool", "q",
    )  # fmt: skip
    assert code == 1
    assert shown["problems"][0].startswith("Tool(s) no_such_tool not found. Available tools:")
    assert shown["problems"][1:] == [
        "No proposer or aggregator accepts attachments of type 'text/plain'",
        "aggregator fake-plain does not support --schema; choose a schema-capable aggregator "
        "(llm models --schemas)",
    ]
    plain = next(m for m in shown["members"] if m["model"] == "fake-plain")
    assert plain["schema"] is False and plain["needs"]["schema"] is True


def test_output_tokens_come_from_history_and_match_it():
    for _ in range(3):  # five words: the fake reports 5 output tokens
        assert run_llm("-m", "fake-b", "-o", "text", "one two three four five", "q").exit_code == 0
    assert run_llm("moa", "prices", "set", "fake-b", "1", "2").exit_code == 0
    code, shown = plan("-o", "proposers", "fake-b,fake-a", "-o", "aggregator", "fake-b", "q")
    first, second, aggregator = (call["estimate"] for call in shown["calls"])
    assert first["output_tokens"] == 5 and first["output_source"] == (
        "median of your last 3 logged answers"
    )
    assert second["output_tokens"] is None  # fake-a has no history, no max_tokens
    assert first["usd"] == pytest.approx((first["input_tokens"] * 1 + 5 * 2) / 1e6)
    total = shown["estimate"]
    assert not total["complete"] and total["text"].startswith("≥ $")
    assert "fake-a unpriced" in total["text"] and "output unknown: fake-a" in total["text"]
    # after real runs the aggregator reads answers of known length
    log = [c for c in read_calls() if c["model"] == "fake-b"]
    assert len(log) == 3  # only the three runs above: the plan called nothing
    assert aggregator["input_is_lower_bound"]  # it reads fake-a's answer, of unknown length


def test_max_tokens_is_an_upper_bound_when_there_is_no_history():
    assert run_llm("moa", "prices", "set", "fake-a", "1", "1").exit_code == 0
    # the same model as proposers (max_tokens 100) and as the aggregator (none): each its own
    args = ["-o", "proposers", "fake-a*2", "-o", "proposer_options", '{"max_tokens": 100}']
    code, shown = plan(*args, "q")
    first, second, aggregator = (call["estimate"] for call in shown["calls"])
    assert (first["output_tokens"], first["output_high"], first["output_source"]) == (
        None,
        100,
        "max_tokens",
    )
    assert first["usd"] is None
    assert first["usd_high"] == pytest.approx((first["input_tokens"] + 100) / 1e6)
    assert aggregator["output_high"] is None and aggregator["output_source"].startswith("unknown")
    total = shown["estimate"]  # the aggregator reads answers of unknown length: no upper bound
    assert total["usd_high"] is None and total["range"].startswith("no upper bound")
    assert total["text"].startswith("≥ ") and "output unknown: fake-a" in total["text"]
    text = run_llm("moa", "plan", *args, "q").stdout
    assert "<= 100 (max_tokens)" in text


def quiz(tmp_path, n=3):
    path = tmp_path / "q.jsonl"
    rows = [{"prompt": f"What is {i}+1?", "answer": str(i + 1)} for i in range(n)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_eval_plan_counts_only_the_prompts_still_to_answer_and_calls_nothing(tmp_path):
    path = quiz(tmp_path)
    args = ["moa", "eval", str(path), "-m", "moa-default", "-m", "fake-b", "--grade", "contains"]
    assert run_llm(*args, "-n", "1").exit_code == 0  # one prompt answered by both
    before = len(read_calls())
    result = run_llm(*args, "--plan", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert len(read_calls()) == before
    assert [(m["model"], m["prompts"], m["calls"]["most"]) for m in shown["models"]] == [
        ("moa-default", 2, 8),
        ("fake-b", 2, 2),
    ]
    assert shown["total"]["calls"]["most"] == 10


def test_eval_plan_with_a_judge_and_a_cap(tmp_path):
    path = quiz(tmp_path, 4)
    for model in ("fake-a", "fake-b", "fake-judge-first"):
        assert run_llm("moa", "prices", "set", model, "1", "1").exit_code == 0
    for _ in range(3):  # a history: 4 output tokens each (the judge reports none)
        run_llm("-m", "fake-a", "-o", "text", "one two three four", "x")
        run_llm("-m", "fake-b", "-o", "text", "one two three four", "x")
    before = len(read_calls())
    args = ["moa", "eval", str(path), "-m", "fake-a", "-m", "fake-b"]
    result = run_llm(*args, "--judge", "fake-judge-first", "--max-cost", "0.0001", "--plan")
    assert result.exit_code == 0, result.output
    assert "fake-judge-first (judge)  8" in result.stdout  # 4 prompts, both orders
    assert "may not fit" in result.stdout  # the judge's output is unknown: a lower bound
    assert "of the 4 prompts still to answer" in result.stdout
    # graded, every figure known: 3 input and 4 output tokens a prompt for each model, $1/M
    result = run_llm(*args, "--grade", "contains", "--max-cost", "0.00003", "--plan", "--json")
    shown = json.loads(result.stdout)
    assert shown["total"]["usd"] == pytest.approx(4 * 2 * 7 / 1e6)
    assert shown["cap"]["fits"] == "does not fit" and shown["cap"]["prompts"] == 2
    assert len(read_calls()) == before and not (tmp_path / "q.eval.jsonl").exists()


def test_history_is_read_from_the_database_given_with_d(tmp_path):
    other = str(tmp_path / "other.db")
    for _ in range(3):
        assert run_llm("-m", "fake-b", "-o", "text", "a b c", "q", "-d", other).exit_code == 0
    args = ["-o", "proposers", "fake-b", "-o", "aggregator", "fake-c", "q"]
    assert plan(*args, "-d", other)[1]["calls"][0]["estimate"]["output_tokens"] == 3
    assert plan(*args)[1]["calls"][0]["estimate"]["output_tokens"] is None
