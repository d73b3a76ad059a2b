"""Issue 16: what a run costs in dollars.

Prices are the user's (`llm moa prices set`), else genai-prices' bundled data
(by model id, or by the provider's ``model_name``), else the model is
unpriced and every total that includes it is a lower bound naming it. The
fakes report usage; ``claude-3-haiku-20240307`` and ``fake-mini`` (whose
``model_name`` is ``gpt-4o-mini``) are fakes the public data knows.
"""

import json
import os
import subprocess
import sys

import llm
import pytest
from click.testing import CliRunner
from conftest import TESTS, WRAPPER, run_llm
from fake_models import FakeModel, read_calls

PUBLIC = "claude-3-haiku-20240307"  # an id genai-prices knows, and no plugin of llm's registers


class FakeMini(FakeModel):
    "A fake registered under an id of its own, whose provider calls it gpt-4o-mini (as llm's OpenAI models say)."

    model_name = "gpt-4o-mini"


class PublicFakes:
    __name__ = "llm_moa_test_public_fakes"

    @llm.hookimpl
    def register_models(self, register):
        register(FakeModel(PUBLIC))
        register(FakeMini("fake-mini"))


@pytest.fixture
def public_fakes():
    from llm.plugins import pm

    plugin = PublicFakes()
    pm.register(plugin, name="llm-moa-test-public-fakes")
    yield
    pm.unregister(plugin)


def public_cost(model_ref, input_tokens, output_tokens):
    "What genai-prices itself says the call costs."
    from genai_prices import Usage, calc_price

    return float(calc_price(Usage(input_tokens=input_tokens, output_tokens=output_tokens), model_ref).total_price)


def prices(*args):
    "`llm moa prices ...`"
    from llm_moa.prices import prices_group

    return CliRunner().invoke(prices_group(), list(args), catch_exceptions=False)


def prices_file(user_path):
    return user_path / "moa" / "prices.json"


# --- setting, listing and removing prices ------------------------------------------


def test_set_list_and_remove_a_price(user_path):
    result = prices("set", "alias-a", "0.15", "0.6")  # an alias is saved under its model id
    assert result.exit_code == 0, result.output
    assert result.output == "Saved your price for fake-a: $0.15 input, $0.6 output per million tokens\n"
    assert prices("set", "fake-a", "1", "2").output.startswith("Replaced your price for fake-a: $1 input, $2 output")
    unknown = prices("set", "my-gateway-model", "3", "4.5")
    assert "kept as typed" in unknown.output
    saved = json.loads(prices_file(user_path).read_text())
    assert {k: (v["input"], v["output"]) for k, v in saved.items()} == {
        "fake-a": (1, 2), "my-gateway-model": (3, 4.5)}

    listed = prices("list").output.splitlines()
    assert listed[0].split() == ["model", "input", "$/M", "output", "$/M", "saved"]
    assert [line.split()[:3] for line in listed[1:]] == [["fake-a", "1", "2"], ["my-gateway-model", "3", "4.5"]]
    assert json.loads(prices("list", "--json").output)["fake-a"]["output"] == 2

    assert prices("remove", "alias-a").output == "Removed your price for fake-a\n"
    assert list(json.loads(prices_file(user_path).read_text())) == ["my-gateway-model"]
    gone = prices("remove", "fake-a")
    assert gone.exit_code == 1
    assert gone.output == "Error: No price of yours for 'fake-a'; 'llm moa prices list' shows them\n"


def test_where_each_price_comes_from(public_fakes):
    assert prices("set", "fake-a", "1", "2").exit_code == 0
    result = prices("list", "fake-a", PUBLIC, "fake-mini", "fake-b")
    lines = result.output.splitlines()
    assert lines[0] == "fake-a: $1 input, $2 output per million tokens (yours)"
    assert lines[1].startswith(f"{PUBLIC}: $0.25 input, $1.25 output per million tokens (genai-prices 0.")
    assert lines[1].endswith(": anthropic claude-3-haiku)")
    assert lines[2].startswith("fake-mini: $0.15 input, $0.6 output") and lines[2].endswith("openai gpt-4o-mini)")
    assert lines[3] == "fake-b: unpriced: set a price with llm moa prices set MODEL INPUT OUTPUT"
    entries = json.loads(prices("list", "--json", "fake-mini", "fake-b").output)
    assert entries[0]["input_per_million"] == pytest.approx(0.15) and entries[1]["source"] is None


def test_your_price_comes_before_the_public_one(public_fakes):
    assert prices("set", PUBLIC, "9", "10").exit_code == 0
    assert prices("list", PUBLIC).output == f"{PUBLIC}: $9 input, $10 output per million tokens (yours)\n"


def test_a_moa_model_has_no_price_of_its_own(user_path):
    result = prices("set", "moa-default", "1", "1")
    assert result.exit_code == 1
    assert result.output == (
        "Error: moa-default is a MoA model: a run costs what its calls cost, so price the models it calls\n")
    assert not prices_file(user_path).exists()


BAD_PRICES = [
    (["fake-a", "-1", "2"], "Invalid input price '-1': must be a finite number, 0 or more"),
    (["fake-a", "1", "-0.5"], "Invalid output price '-0.5': must be a finite number, 0 or more"),
    (["fake-a", "cheap", "2"], "Invalid input price 'cheap': expected a number of US dollars per million tokens"),
    (["fake-a", "1", "$2"], "Invalid output price '$2': expected a number of US dollars per million tokens"),
    (["fake-a", "nan", "2"], "Invalid input price 'nan': must be a finite number, 0 or more"),
    (["fake-a", "1", "inf"], "Invalid output price 'inf': must be a finite number, 0 or more"),
    (["fake-a", "1e400", "1"], "Invalid input price '1e400': must be a finite number, 0 or more"),
    (["fake-a", "1"], "Missing output price: give US dollars per million output tokens, e.g. 0.15"),
    (["fake-a"], "Missing input price: give US dollars per million input tokens, e.g. 0.15"),
    ([], "Missing MODEL: llm moa prices set MODEL INPUT OUTPUT"),
    (["fake-a", " ", "1"], "Missing input price: give US dollars per million input tokens, e.g. 0.15"),
]


@pytest.mark.parametrize("args, message", BAD_PRICES, ids=[" ".join(a) or "nothing" for a, _ in BAD_PRICES])
def test_a_bad_price_is_one_line_naming_it_and_nothing_is_saved(args, message, user_path):
    assert prices("set", "fake-b", "1", "1").exit_code == 0
    before = prices_file(user_path).read_bytes()
    result = prices("set", *args)
    assert result.exit_code == 1
    assert result.output == f"Error: {message}\n"
    assert prices_file(user_path).read_bytes() == before


def test_remove_needs_a_model():
    result = prices("remove")
    assert result.exit_code == 1 and result.output == "Error: Missing MODEL: llm moa prices remove MODEL\n"


NONSENSE = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"fake-a": "cheap"}', "the entry for 'fake-a' is not a JSON object"),
    ('{"fake-a": {"input": -1, "output": 1}}', "the entry for 'fake-a' has no valid 'input' price"),
    ('{"fake-a": {"input": 1, "output": "2"}}', "the entry for 'fake-a' has no valid 'output' price"),
    ('{"fake-a": {"input": 1, "output": NaN}}', "the entry for 'fake-a' has no valid 'output' price"),
    ('{"fake-a": {"input": 1e999, "output": 1}}', "the entry for 'fake-a' has no valid 'input' price"),
]


@pytest.mark.parametrize("content, problem", NONSENSE, ids=[c for c, _ in NONSENSE])
def test_a_prices_file_edited_into_nonsense_is_one_line_naming_it(content, problem, user_path):
    path = prices_file(user_path)
    path.parent.mkdir()
    path.write_text(content)
    result = prices("list")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {path}: {problem}")
    assert result.output.count("\n") == 1
    # every other command keeps working
    run = run_llm("-m", "moa-default", "-o", "proposers", "fake-a,fake-b", "-o", "aggregator", "fake-c", "q")
    assert run.exit_code == 0 and run.output == "fake-c answers: q\n"
    assert run_llm("moa", "list").exit_code == 0
    assert run_llm("models").exit_code == 0


def test_a_bad_entry_can_be_removed_or_replaced(user_path):
    path = prices_file(user_path)
    path.parent.mkdir()
    path.write_text('{"fake-a": "cheap", "fake-b": {"input": -1}}')
    assert prices("remove", "fake-a").exit_code == 0
    assert prices("set", "fake-b", "1", "2").exit_code == 0
    assert prices("list").exit_code == 0


# --- what showing no cost costs ------------------------------------------------------


def imported_modules(user_path, *args):
    "The modules a real llm process imports for this command (python -X importtime)."
    env = {**os.environ, "LLM_USER_PATH": str(user_path), "PYTHONPATH": str(TESTS)}
    done = subprocess.run([sys.executable, "-X", "importtime", str(WRAPPER), *args], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}


def test_genai_prices_is_not_imported_by_llm_or_by_a_run(user_path):
    assert prices("set", "fake-a", "1", "2").exit_code == 0  # a prices file exists: still not read by a run
    _, modules = imported_modules(user_path, "models")
    assert "genai_prices" not in modules and "llm_moa.prices" not in modules
    out, modules = imported_modules(user_path, "-m", "moa-default", "-o", "proposers", "fake-a,fake-b",
                                    "-o", "aggregator", "fake-c", "q")
    assert out == "fake-c answers: q\n"
    assert "llm_moa.session" in modules  # the run was made, and its imports seen
    assert "genai_prices" not in modules and "llm_moa.prices" not in modules
    assert len(read_calls()) == 3
