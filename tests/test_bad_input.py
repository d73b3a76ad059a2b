"""Every bad option gets one clear line, a non-zero exit, no call and no log."""

import pytest

from conftest import run_llm, turns
from fake_models import read_calls

CASES = [
    (["-o", "layers", "1"], "layers: expected 2 to 10, got 1"),
    (["-o", "layers", "abc"], "layers: expected a whole number, got 'abc'"),
    (["-o", "layers", "1000000000"], "layers: expected 2 to 10, got 1000000000"),
    (["-o", "proposers", ""], "proposers: expected a model id or alias, got ''"),
    (["-o", "proposers", "[]"], "proposers: at least one model is required"),
    (["-o", "proposers", "fake-a,,fake-b"], "proposers: expected a model id or alias, got ''"),
    (["-o", "proposers", "nope"], "Unknown proposer model 'nope'; run 'llm models' to list the available models"),
    (["-o", "aggregator", "nope"], "Unknown aggregator model 'nope'; run 'llm models' to list the available models"),
    (["-o", "proposers", "[1"], "proposers: invalid JSON"),
    (["-o", "proposers", "[1]"], "proposers: each entry must be a model id or"),
    (["-o", "proposers", '[{"model": "fake-a", "opts": {}}]'], "proposers: unknown key 'opts'"),
    (["-o", "proposers", '[{"model": "fake-a", "options": {"bogus": 1}}]'],
     "proposer fake-a: unknown option 'bogus'; fake-a accepts: delay, chunk_delay"),
    (["-o", "proposer_options", '{"temperature": "hot"}'], "proposer fake-a: option temperature='hot'"),
    (["-o", "proposer_options", "[1, 2]"], "proposer_options: expected a JSON object"),
    (["-o", "aggregator_options", "{oops"], "aggregator_options: invalid JSON"),
    (["-o", "timeout", "nan"], "timeout: expected a finite number, got 'nan'"),
    (["-o", "timeout", "-5"], "timeout: expected seconds above 0"),
    (["-o", "retries", "99"], "retries: expected 0 to 10, got 99"),
    (["-o", "min_proposers", "5"], "min_proposers: 5 is more than the 3 proposers"),
    (["-o", "wait", "0"], "wait: expected 'all' or a number of proposers, got 0"),
    (["-o", "max_concurrency", "-1"], "max_concurrency: expected 1 to 128, got -1"),
    (["-o", "show_proposals", "maybe"], "show_proposals: expected true or false, got 'maybe'"),
    (["-o", "colour", "blue"], "Unknown option 'colour'; allowed: proposers, aggregator"),
    (["-o", "proposers", ",".join(["fake-a"] * 1000)], "proposers: at most 128 allowed, got 1000"),
    (["-o", "proposers", "[" * 5000 + "]" * 5000], "proposers: JSON is nested too deeply"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(c[0])[:40] for c in CASES])
def test_bad_option_is_one_clear_line(args, message, user_path):
    result = run_llm("-m", "moa-default", *args, "q")
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert read_calls() == []
    assert turns(user_path) == []

