"""Every bad option gets a clear error naming the value and what is allowed, a
non-zero exit, no call and no log. Option values are checked by llm itself, as
for every model (`field` on one line, the message under it); what is found
later (models, keys, per-member options) is one line."""

import pytest
from conftest import run_llm, turns
from fake_models import read_calls

OPTION_ERRORS = [
    (["-o", "layers", "1"], "layers", "Input should be greater than or equal to 2, got '1'"),
    (
        ["-o", "layers", "abc"],
        "layers",
        "Input should be a valid integer, unable to parse string as an integer, got 'abc'",
    ),
    (
        ["-o", "layers", "1000000000"],
        "layers",
        "Input should be less than or equal to 10, got '1000000000'",
    ),
    (["-o", "proposers", ""], "proposers", "expected a model id or alias, got ''"),
    (["-o", "proposers", "[]"], "proposers", "at least one model is required"),
    (["-o", "proposers", "fake-a,,fake-b"], "proposers", "expected a model id or alias, got ''"),
    (["-o", "proposers", "[1"], "proposers", "invalid JSON"),
    (["-o", "proposers", "[1]"], "proposers", "each entry must be a model id or"),
    (["-o", "proposers", '[{"model": "fake-a", "opts": {}}]'], "proposers", "unknown key 'opts'"),
    (
        ["-o", "proposers", "fake-a*³"],
        "proposers",
        "repeat count in 'fake-a*³' must be a whole number from 1 to 128",
    ),
    (["-o", "proposers", "fake-a*" + "9" * 4000], "proposers", "repeat count in 'fake-a*999"),
    (["-o", "proposer_options", "[1, 2]"], "proposer_options", "expected a JSON object"),
    (["-o", "aggregator_options", "{oops"], "aggregator_options", "invalid JSON"),
    (["-o", "timeout", "nan"], "timeout", "Input should be a finite number, got 'nan'"),
    (["-o", "timeout", "-5"], "timeout", "Input should be greater than or equal to 0, got '-5'"),
    (["-o", "retries", "99"], "retries", "Input should be less than or equal to 10, got '99'"),
    (["-o", "min_proposers", "5"], "min_proposers", "5 is more than the 3 proposers"),
    (
        ["-o", "proposers", "fake-a,fake-b", "-o", "wait", "3"],
        "wait",
        "3 is more than the 2 proposers",
    ),
    (["-o", "min_proposers", "2", "-o", "wait", "1"], "wait", "1 is less than min_proposers (2)"),
    (["-o", "wait", "0"], "wait", "Input should be greater than or equal to 1, got '0'"),
    (
        ["-o", "max_concurrency", "-1"],
        "max_concurrency",
        "Input should be greater than or equal to 1, got '-1'",
    ),
    (
        ["-o", "show_proposals", "maybe"],
        "show_proposals",
        "Input should be a valid boolean, unable to interpret input, got 'maybe'",
    ),
    (["-o", "colour", "blue"], "colour", "unknown option; allowed: proposers, aggregator"),
    (
        ["-o", "proposers", ",".join(["fake-a"] * 1000)],
        "proposers",
        "at most 128 allowed, got 1000",
    ),
    (["-o", "proposers", "[" * 5000 + "]" * 5000], "proposers", "JSON is nested too deeply"),
]

LATER_ERRORS = [
    (
        ["-o", "proposers", "nope"],
        "Unknown proposer model 'nope'; run 'llm models' to list the available models",
    ),
    (
        ["-o", "aggregator", "nope"],
        "Unknown aggregator model 'nope'; run 'llm models' to list the available models",
    ),
    (
        ["-o", "proposers", '[{"model": "fake-a", "options": {"bogus": 1}}]'],
        "proposer fake-a: unknown option 'bogus'; fake-a accepts: delay, chunk_delay",
    ),
    (
        ["-o", "proposer_options", '{"temperature": "hot"}'],
        "proposer fake-a: option temperature='hot'",
    ),
]


def refused(result, user_path):
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert read_calls() == []
    assert turns(user_path) == []


@pytest.mark.parametrize(
    "args, field, message", OPTION_ERRORS, ids=[" ".join(c[0])[:40] for c in OPTION_ERRORS]
)
def test_bad_option_names_the_value_and_what_is_allowed(args, field, message, user_path):
    result = run_llm("-m", "moa-default", *args, "q")
    refused(result, user_path)
    first, second = result.stderr.splitlines()
    assert first == f"Error: {field}"
    assert second.startswith(f"  {message}"), second


@pytest.mark.parametrize(
    "args, message", LATER_ERRORS, ids=[" ".join(c[0])[:40] for c in LATER_ERRORS]
)
def test_errors_found_later_are_one_line(args, message, user_path):
    result = run_llm("-m", "moa-default", *args, "q")
    refused(result, user_path)
    assert result.stderr.startswith(f"Error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1


def test_a_saved_typo_is_refused_like_for_any_model(user_path):
    result = run_llm("models", "options", "set", "moa-default", "proposer", "fake-a")
    assert result.exit_code == 1
    assert "proposer" in result.stderr and "unknown option; allowed: proposers" in result.stderr
    assert run_llm("-m", "moa-default", "q").exit_code == 0  # nothing was saved


def test_a_bad_value_in_a_preset_merged_at_run_time_is_one_line(user_path):
    assert run_llm("moa", "save", "two", "-o", "proposers", "fake-a,fake-b").exit_code == 0
    result = run_llm("-m", "moa-two", "-o", "min_proposers", "3", "q")
    refused(result, user_path)
    assert result.stderr == "Error: min_proposers: 3 is more than the 2 proposers\n"


def test_saved_defaults_that_conflict_are_one_line_naming_both(user_path):
    "llm checks a saved option alone; the run names both options that do not fit together."
    assert run_llm("models", "options", "set", "moa-default", "cascade", "2").exit_code == 0
    saved = run_llm("models", "options", "set", "moa-default", "proposers", "fake-a")
    assert saved.exit_code == 0  # llm validates one option at a time: it cannot refuse this
    result = run_llm("-m", "moa-default", "q")
    refused(result, user_path)
    assert result.stderr == (
        "Error: Options cascade 2 and proposers 'fake-a' do not fit together (2 is not below the "
        "1 proposers (cascade asks the rest when the first disagree)); one of them is a saved "
        "default (`llm models options list`)\n"
    )
    typed = run_llm("-m", "moa-default", "-o", "cascade", "1", "q")  # still the saved proposers
    assert typed.exit_code == 1
    assert typed.stderr.startswith("Error: Options cascade 1 and proposers 'fake-a' do not fit")
    both = run_llm(
        "-m", "moa-default", "-o", "cascade", "5", "-o", "proposers", "fake-a,fake-b", "q"
    )
    assert both.stderr.splitlines() == [  # both typed: llm's own two lines
        "Error: cascade",
        "  5 is not below the 2 proposers (cascade asks the rest when the first disagree)",
    ]
