"""Issue 16: what a run costs in dollars.

Prices are the user's (`llm moa prices set`), else genai-prices' bundled data
(by model id, or by the provider's ``model_name``), else the model is
unpriced and every total that includes it is a lower bound naming it. The
fakes report usage; ``claude-3-haiku-20240307`` and ``fake-mini`` (whose
``model_name`` is ``gpt-4o-mini``) are fakes the public data knows.
"""

import json
import os
import sqlite3
import subprocess
import sys

import llm
import pytest
from conftest import TESTS, WRAPPER, logged_json, moa, results, run_llm, set_prices, show_json
from fake_models import FakeModel, read_calls
from openai_fixtures import register_openai_models, set_key
from openai_server import OpenAIServer

from llm_moa.prices import format_usd

PUBLIC = "claude-3-haiku-20240307"  # an id genai-prices knows, and no plugin of llm's registers


class FakeMini(FakeModel):
    "A fake registered under an id of its own, whose provider calls it gpt-4o-mini (as llm's OpenAI models say)."

    model_name = "gpt-4o-mini"


class FakeRouted(FakeModel):
    "A fake as llm-openrouter registers its models: openrouter/<the router's name>, model_name that name."

    model_name = "openai/gpt-4o"


class PublicFakes:
    __name__ = "llm_moa_test_public_fakes"

    @llm.hookimpl
    def register_models(self, register):
        register(FakeModel(PUBLIC))
        register(FakeMini("fake-mini"))
        register(FakeRouted("openrouter/openai/gpt-4o"))
        # genai-prices would match this by its beginning to claude-haiku-4-5
        register(FakeModel("claude-haiku-4-5-banana"))


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

    return float(
        calc_price(
            Usage(input_tokens=input_tokens, output_tokens=output_tokens), model_ref
        ).total_price
    )


def prices(*args):
    "`llm moa prices ...`"
    return run_llm("moa", "prices", *args)


def logged_calls():
    "Every call of the last run, as its record has them: (model, input tokens, output tokens)."
    from llm_moa.core.record import StoredRun

    record = StoredRun.parse(logged_json()[0]["response_json"]["moa"])
    return [(c.model, c.usage.input, c.usage.output) for _, c in record.labelled_calls()]


def prices_file(user_path):
    return user_path / "moa" / "prices.json"


# --- setting, listing and removing prices ------------------------------------------


def test_set_list_and_remove_a_price(user_path):
    result = prices("set", "alias-a", "0.15", "0.6")  # an alias is saved under its model id
    assert result.exit_code == 0, result.output
    assert (
        result.output
        == "Saved your price for fake-a: $0.15 input, $0.6 output per million tokens\n"
    )
    assert prices("set", "fake-a", "1", "2").output.startswith(
        "Replaced your price for fake-a: $1 input, $2 output"
    )
    unknown = prices("set", "my-gateway-model", "3", "4.5")
    assert "kept as typed" in unknown.output
    saved = json.loads(prices_file(user_path).read_text())
    assert {k: (v["input"], v["output"]) for k, v in saved.items()} == {
        "fake-a": (1, 2),
        "my-gateway-model": (3, 4.5),
    }

    listed = prices("list").output.splitlines()
    assert listed[0].split() == ["model", "input", "$/M", "output", "$/M", "saved"]
    assert [line.split()[:3] for line in listed[1:]] == [
        ["fake-a", "1", "2"],
        ["my-gateway-model", "3", "4.5"],
    ]
    assert json.loads(prices("list", "--json").output)["fake-a"]["output"] == 2

    assert prices("remove", "alias-a").output == "Removed your price for fake-a\n"
    assert list(json.loads(prices_file(user_path).read_text())) == ["my-gateway-model"]
    gone = prices("remove", "fake-a")
    assert gone.exit_code == 1
    assert (
        gone.output == "Error: No price of yours for 'fake-a'; 'llm moa prices list' shows them\n"
    )


def test_where_each_price_comes_from(public_fakes):
    assert prices("set", "fake-a", "1", "2").exit_code == 0
    result = prices("list", "fake-a", PUBLIC, "fake-mini", "fake-b")
    lines = result.output.splitlines()
    assert lines[0] == "fake-a: $1 input, $2 output per million tokens (yours)"
    assert lines[1].startswith(
        f"{PUBLIC}: $0.25 input, $1.25 output per million tokens (genai-prices 0."
    )
    assert lines[1].endswith(": anthropic claude-3-haiku)")
    assert lines[2].startswith("fake-mini: $0.15 input, $0.6 output") and lines[2].endswith(
        ": openai gpt-4o-mini, by its model_name 'gpt-4o-mini')"
    )
    assert lines[3] == "fake-b: unpriced: set a price with llm moa prices set MODEL INPUT OUTPUT"
    entries = json.loads(prices("list", "--json", "fake-mini", "fake-b").output)
    assert entries[0]["input_per_million"] == pytest.approx(0.15) and entries[1]["source"] is None


def listed(*models):
    result = prices("list", *models)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_claude_is_priced_by_its_claude_model_id():
    "llm-anthropic's ids are unknown to genai-prices; its claude_model_id is the provider's name."
    [line] = listed("claude-haiku-4.5")
    assert line.startswith(
        "anthropic/claude-haiku-4-5-20251001: $1 input, $5 output per million tokens (genai-prices 0."
    )
    assert line.endswith(
        ": anthropic claude-haiku-4-5, by its claude_model_id 'claude-haiku-4-5-20251001')"
    )


def test_gemini_offline_registration_options_and_prices(user_path):
    "llm-gemini's address is fixed in its code: what can be tested without a network."
    [line] = listed("gemini-2.5-flash")
    assert line.startswith("gemini/gemini-2.5-flash: $0.3 input, $2.5 output per million tokens")
    assert line.endswith(": google gemini-2.5-flash, by its gemini_model_id 'gemini-2.5-flash')")
    saved = run_llm(
        "moa", "save", "g", "-o", "proposers", "gemini-2.5-flash*2",
        "-o", "aggregator", "fake-a", "-o", "proposer_options", '{"temperature": 0.5}',
    )  # fmt: skip
    assert saved.output.startswith("Saved preset 'g' as model moa-g: 2 proposers")
    bad = run_llm(
        "moa", "save", "h", "-o", "proposers", "gemini-2.5-flash",
        "-o", "proposer_options", '{"temprature": 0.5}',
    )  # fmt: skip
    assert bad.exit_code == 1
    assert "proposer gemini-2.5-flash: unknown option 'temprature'; gemini/gemini-2.5-flash" in (
        bad.output
    )


def test_a_provider_prefix_and_a_name_the_data_only_begins_like(public_fakes):
    routed, banana, local = listed(
        "openrouter/openai/gpt-4o", "claude-haiku-4-5-banana", "ollama/llama3.2:latest"
    )
    assert routed.startswith("openrouter/openai/gpt-4o: $2.5 input, $10 output")
    assert routed.endswith(": openrouter openai/gpt-4o, by its id without openrouter/)")
    assert banana == (
        "claude-haiku-4-5-banana: unpriced: set a price with llm moa prices set MODEL INPUT OUTPUT"
    )
    assert local.startswith("ollama/llama3.2:latest: unpriced")


def test_your_price_comes_before_the_public_one(public_fakes):
    assert prices("set", PUBLIC, "9", "10").exit_code == 0
    assert (
        prices("list", PUBLIC).output
        == f"{PUBLIC}: $9 input, $10 output per million tokens (yours)\n"
    )


def test_a_moa_model_has_no_price_of_its_own(user_path):
    result = prices("set", "moa-default", "1", "1")
    assert result.exit_code == 1
    assert result.output == (
        "Error: moa-default is a MoA model: a run costs what its calls cost, so price the models it calls\n"
    )
    assert not prices_file(user_path).exists()


BAD_PRICES = [
    (["fake-a", "-1", "2"], "Invalid input price '-1': must be a number from 0 to 1,000,000"),
    (["fake-a", "1", "-0.5"], "Invalid output price '-0.5': must be a number from 0 to 1,000,000"),
    (
        ["fake-a", "cheap", "2"],
        "Invalid input price 'cheap': expected a number of US dollars per million tokens",
    ),
    (
        ["fake-a", "1", "$2"],
        "Invalid output price '$2': expected a number of US dollars per million tokens",
    ),
    (["fake-a", "nan", "2"], "Invalid input price 'nan': must be a number from 0 to 1,000,000"),
    (["fake-a", "1", "inf"], "Invalid output price 'inf': must be a number from 0 to 1,000,000"),
    (["fake-a", "1e400", "1"], "Invalid input price '1e400': must be a number from 0 to 1,000,000"),
    (
        ["fake-a", "1", "1e308"],
        "Invalid output price '1e308': must be a number from 0 to 1,000,000",
    ),
    (["fake-a", "1"], "Missing output price: give US dollars per million output tokens, e.g. 0.15"),
    (["fake-a"], "Missing input price: give US dollars per million input tokens, e.g. 0.15"),
    ([], "Missing MODEL: llm moa prices set MODEL INPUT OUTPUT"),
    (
        ["fake-a", " ", "1"],
        "Missing input price: give US dollars per million input tokens, e.g. 0.15",
    ),
]


@pytest.mark.parametrize(
    "args, message", BAD_PRICES, ids=[" ".join(a) or "nothing" for a, _ in BAD_PRICES]
)
def test_a_bad_price_is_one_line_naming_it_and_nothing_is_saved(args, message, user_path):
    assert prices("set", "fake-b", "1", "1").exit_code == 0
    before = prices_file(user_path).read_bytes()
    result = prices("set", *args)
    assert result.exit_code == 1
    assert result.output == f"Error: {message}\n"
    assert prices_file(user_path).read_bytes() == before


def test_any_price_set_reads_back(user_path):
    "Typed and stored prices follow one rule (a number from 0 to 1,000,000): what set saves, list reads."
    assert prices("set", "fake-a", "1e6", "0.5").exit_code == 0
    listed = prices("list")
    assert listed.exit_code == 0 and listed.output.splitlines()[1].split()[:3] == [
        "fake-a",
        "1e+06",
        "0.5",
    ]


def test_a_price_of_minus_zero_is_zero(user_path):
    result = prices("set", "fake-a", "-0", "-0.0")
    assert result.output == "Saved your price for fake-a: $0 input, $0 output per million tokens\n"
    assert prices("list").output.splitlines()[1].split()[:3] == ["fake-a", "0", "0"]
    assert json.loads(prices_file(user_path).read_text())["fake-a"]["input"] == 0.0


def test_a_moa_model_listed_names_the_models_it_calls(user_path):
    "Never a suggestion to set a price that set then refuses."
    result = prices("list", "moa-default")
    assert result.exit_code == 0
    assert result.output == (
        "moa-default: a MoA model, which costs what its calls cost: "
        "see llm moa prices list fake-a\n"
    )
    assert json.loads(prices("list", "--json", "moa-default").output) == [
        {"model": "moa-default", "source": None, "calls": ["fake-a"]}
    ]


def test_a_symlinked_prices_file_stays_a_link(user_path, tmp_path):
    target = tmp_path / "shared-prices.json"
    target.write_text("{}")
    prices_file(user_path).parent.mkdir()
    prices_file(user_path).symlink_to(target)
    assert prices("set", "fake-a", "1", "2").exit_code == 0
    assert prices_file(user_path).is_symlink()
    assert json.loads(target.read_text())["fake-a"]["output"] == 2


def test_json_has_no_number_that_is_not_finite(user_path):
    """A hand-edited log row with 1e999 (infinite to Python) where the record
    allows any value is shown as null, which strict parsers accept."""
    moa("-o", "proposers", "fake-a", "-o", "aggregator", "fake-b", "q")
    db = sqlite3.connect(user_path / "logs.db")
    with db:
        db.execute(
            'update turns set response_json = replace(response_json, \'"version": 1\', \'"version": 1, "note": 1e999\')'
        )
    db.close()
    for command in (["moa", "show", "--json"], ["moa", "runs", "--json"]):
        output = run_llm(*command).output
        parsed = json.loads(output, parse_constant=pytest.fail)
        assert "Infinity" not in output and parsed
    assert '"note": null' in run_llm("moa", "show", "--json").output  # the edit was read


def test_remove_needs_a_model():
    result = prices("remove")
    assert (
        result.exit_code == 1
        and result.output == "Error: Missing MODEL: llm moa prices remove MODEL\n"
    )


NONSENSE = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"fake-a": "cheap"}', "the entry for 'fake-a' is not a JSON object"),
    ('{"fake-a": {"input": -1, "output": 1}}', "the entry for 'fake-a' has no valid 'input' price"),
    (
        '{"fake-a": {"input": 1, "output": "2"}}',
        "the entry for 'fake-a' has no valid 'output' price",
    ),
    (
        '{"fake-a": {"input": 1, "output": NaN}}',
        "the entry for 'fake-a' has no valid 'output' price",
    ),
    (
        '{"fake-a": {"input": 1e999, "output": 1}}',
        "the entry for 'fake-a' has no valid 'input' price",
    ),
    (
        '{"fake-a": {"input": 1' + "0" * 400 + ', "output": 1}}',
        "the entry for 'fake-a' has no valid 'input' price",
    ),
    (
        '{"fake-a": {"input": 1, "output": 1e308}}',
        "the entry for 'fake-a' has no valid 'output' price (a number from 0 to 1,000,000",
    ),
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
    run = run_llm(
        "-m", "moa-default", "-o", "proposers", "fake-a,fake-b", "-o", "aggregator", "fake-c", "q"
    )
    assert run.exit_code == 0 and run.output == "fake-c answers: q\n"
    assert run_llm("moa", "list").exit_code == 0
    assert "moa-default" in run_llm("models").output


def test_a_bad_entry_can_be_removed_or_replaced(user_path):
    path = prices_file(user_path)
    path.parent.mkdir()
    path.write_text('{"fake-a": "cheap", "fake-b": {"input": -1}}')
    assert prices("remove", "fake-a").output == "Removed your price for fake-a\n"
    replaced = prices("set", "fake-b", "1", "2")
    assert replaced.output == (
        "Replaced your price for fake-b: $1 input, $2 output per million tokens\n"
    )
    [header, row] = listed()
    assert header.split()[0] == "model" and row.split()[:3] == ["fake-b", "1", "2"]


# --- what showing no cost costs ------------------------------------------------------


def imported_modules(user_path, *args):
    "The modules a real llm process imports for this command (python -X importtime)."
    env = {**os.environ, "LLM_USER_PATH": str(user_path), "PYTHONPATH": str(TESTS)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(WRAPPER), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, {
        line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line
    }


def test_genai_prices_is_not_imported_by_llm_or_by_a_run(user_path):
    assert (
        prices("set", "fake-a", "1", "2").exit_code == 0
    )  # a prices file exists: still not read by a run
    _, modules = imported_modules(user_path, "models")
    assert "genai_prices" not in modules and "llm_moa.prices" not in modules
    out, modules = imported_modules(
        user_path,
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a,fake-b",
        "-o",
        "aggregator",
        "fake-c",
        "q",
    )
    assert out == "fake-c answers: q\n"
    assert "llm_moa.adapter.session" in modules  # the run was made, and its imports seen
    assert "genai_prices" not in modules and "llm_moa.prices" not in modules
    assert len(read_calls()) == 3
    out, modules = imported_modules(
        user_path, "moa", "show"
    )  # fake-b and fake-c: looked up in the public data
    assert "≥ $" in out and "fake-b unpriced" in out
    assert "genai_prices" in modules


# --- what a run cost -------------------------------------------------------------------


COMBO = ["-o", "proposers", "fake-a,fake-b", "-o", "aggregator", "fake-c"]


def test_show_and_runs_give_each_call_each_model_and_the_total(user_path):
    set_prices(fake_a=(1, 2), fake_b=(3, 4), fake_c=(100, 200))
    moa(*COMBO, "What is rain?")
    price = {"fake-a": (1, 2), "fake-b": (3, 4), "fake-c": (100, 200)}
    calls = logged_calls()
    per_call = [(i * price[m][0] + o * price[m][1]) / 1e6 for m, i, o in calls]
    total = sum(per_call)

    cost = show_json()["cost"]
    assert cost["complete"] is True and cost["unpriced"] == [] and cost["usage_unknown"] == []
    assert cost["usd"] == pytest.approx(total)
    assert cost["calls"] == pytest.approx(per_call)
    assert cost["by_model"]["fake-a"]["price"] == {
        "input_per_million": 1,
        "output_per_million": 2,
        "source": "yours",
    }
    assert cost["text"] == format_usd(total)

    shown = run_llm("moa", "show").output
    header = shown.splitlines()[2]
    assert header.endswith(f" · {format_usd(total)}")
    assert "### 1. fake-a · ok" in shown and f"· {format_usd(per_call[0])}\n" in shown
    assert "## Aggregator: fake-c · ok" in shown and f"· {format_usd(per_call[2])}\n" in shown
    section = shown.split("## Cost\n\n")[1].split("\n\n## Timeline")[0]
    lines = section.splitlines()
    assert lines[0].split()[:4] == ["fake-a", "1", "call", format_usd(per_call[0])]
    assert lines[2].split()[:4] == ["fake-c", "1", "call", format_usd(per_call[2])]
    assert lines[3].split() == ["total", format_usd(total)]
    assert "Prices are estimates" in section

    runs = run_llm("moa", "runs").output.splitlines()
    assert runs[0].split()[-1] == "cost" and runs[1].split()[-1] == format_usd(total)
    assert json.loads(run_llm("moa", "runs", "--json").output)[0]["cost"]["usd"] == pytest.approx(
        total
    )


def test_public_prices_by_id_and_by_model_name(public_fakes):
    moa("-o", "proposers", f"{PUBLIC},fake-mini", "-o", "aggregator", PUBLIC, "q")
    refs = {PUBLIC: PUBLIC, "fake-mini": "gpt-4o-mini"}
    expected = [public_cost(refs[m], i, o) for m, i, o in logged_calls()]
    cost = show_json()["cost"]
    assert cost["complete"] is True
    assert cost["calls"] == pytest.approx(expected)
    assert cost["usd"] == pytest.approx(sum(expected))
    assert cost["by_model"]["fake-mini"]["price"]["source"].endswith(
        ": openai gpt-4o-mini, by its model_name 'gpt-4o-mini'"
    )
    assert "genai-prices 0." in run_llm("moa", "show").output


def test_an_unpriced_model_makes_the_total_a_lower_bound(user_path):
    set_prices(fake_a=(1, 2), fake_c=(100, 200))  # fake-b has no price anywhere
    moa(*COMBO, "q")
    calls = logged_calls()
    priced = sum(
        (i * 1 + o * 2) / 1e6 if m == "fake-a" else (i * 100 + o * 200) / 1e6
        for m, i, o in calls
        if m != "fake-b"
    )
    bound = f"≥ {format_usd(priced)}, fake-b unpriced"

    cost = show_json()["cost"]
    assert cost["complete"] is False and cost["unpriced"] == ["fake-b"] and cost["text"] == bound
    assert cost["usd"] == pytest.approx(priced)
    assert cost["calls"][1] is None
    shown = run_llm("moa", "show").output
    assert shown.splitlines()[2].endswith(f" · {bound}")
    assert "### 2. fake-b · ok" in shown and "out · unpriced" in shown
    assert any(
        line.split()[:4] == ["fake-b", "1", "call", "unpriced"] for line in shown.splitlines()
    )
    assert run_llm("moa", "runs").output.splitlines()[1].endswith(bound)


def test_with_no_price_at_all_the_cost_is_unknown_never_zero(user_path):
    moa(*COMBO, "q")
    cost = show_json()["cost"]
    assert cost["text"] == "unknown (fake-a unpriced, fake-b unpriced, fake-c unpriced)"
    assert "$0" not in run_llm("moa", "show").output.split("## Cost")[1]
    assert "$0" not in run_llm("moa", "runs").output


def test_usage_a_server_did_not_report_makes_the_total_a_lower_bound(srv_models):
    set_prices(srv_a=(1, 1), srv_b=(1, 1), srv_c=(1, 1))
    moa(
        "-o", "proposers", "srv-a,srv-b", "-o", "aggregator", "srv-c", "q"
    )  # streamed: no usage reported
    cost = show_json()["cost"]
    assert cost["complete"] is False and cost["usage_unknown"] == ["srv-a", "srv-b", "srv-c"]
    assert cost["text"] == "unknown (srv-a usage unknown, srv-b usage unknown, srv-c usage unknown)"
    moa(
        "--no-stream", "-o", "proposers", "srv-a,srv-b", "-o", "aggregator", "srv-c", "q"
    )  # usage reported
    cost = show_json()["cost"]
    assert cost["complete"] is True and cost["usd"] > 0


def test_the_provider_model_name_of_an_openai_compatible_model(user_path):
    "llm's own OpenAI plugin: a model registered as my-mini that the server knows as gpt-4o-mini."
    with OpenAIServer(("gpt-4o-mini",), stream_usage="always") as server:
        register_openai_models(user_path, server.url, ["my-mini"], model_name="gpt-4o-mini")
        set_key("srv", "srvkey-7f3a9c1e5b2d8f4a6c0e")
        moa("-o", "proposers", "my-mini,my-mini", "-o", "aggregator", "my-mini", "q")
        assert server.models_called() == ["gpt-4o-mini"] * 3
    expected = [public_cost("gpt-4o-mini", i, o) for _, i, o in logged_calls()]
    cost = show_json()["cost"]
    assert (
        cost["complete"] is True and cost["usd"] == pytest.approx(sum(expected)) and cost["usd"] > 0
    )
    assert cost["by_model"]["my-mini"]["price"]["source"].endswith(
        ": openai gpt-4o-mini, by its model_name 'gpt-4o-mini'"
    )


def test_views_keep_working_on_a_broken_prices_file(user_path):
    moa(*COMBO, "q")
    path = prices_file(user_path)
    path.parent.mkdir(exist_ok=True)
    path.write_text("{oops")
    for command in (["moa", "show"], ["moa", "runs"], ["moa", "show", "--json"]):
        result = run_llm(*command)
        assert result.exit_code == 0
        assert (
            result.stderr
            == f"Warning: {path}: not valid JSON (Expecting property name enclosed in double "
            f"quotes: line 1 column 2 (char 1)); costs are not shown\n"
        )
    assert json.loads(run_llm("moa", "show", "--json").stdout)["cost"] is None
    assert "## Cost" not in run_llm("moa", "show").stdout


# --- eval: dollars, and a spending cap ----------------------------------------------------


def write_rows(path, count=6):
    "Rows fake-a answers right when the answer is in its prompt (every other row)."
    rows = [
        {"prompt": f"question {i}", "answer": f"question {i}" if i % 2 else "elsewhere"}
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_eval_reports_dollars_per_prompt_and_per_correct_answer(tmp_path):
    source = write_rows(tmp_path / "q.jsonl")
    set_prices(fake_a=(1000, 2000), fake_b=(10, 10))
    result = run_llm(
        "moa",
        "eval",
        str(source),
        "-m",
        "fake-a",
        "-m",
        "moa-default",
        "--grade",
        "contains",
        "--json",
    )
    assert result.exit_code == 0, result.output
    by_model = {c["model"]: c for c in json.loads(result.output)["candidates"]}
    price = {"fake-a": (1000, 2000), "fake-b": (10, 10)}
    for model in ("fake-a", "moa-default"):
        answers = [
            r
            for r in results(tmp_path / "q.eval.jsonl")
            if r["type"] == "answer" and r["model"] == model
        ]
        spent = sum(
            (
                c["usage"]["input"] * price[c["model"]][0]
                + c["usage"]["output"] * price[c["model"]][1]
            )
            / 1e6
            for a in answers
            for c in a["billed"]
        )
        entry = by_model[model]
        assert entry["usd"] == pytest.approx(spent) and entry["usd_complete"] is True
        assert entry["usd_per_prompt"] == pytest.approx(spent / 6)
        assert entry["usd_per_correct"] == pytest.approx(spent / entry["correct"])
    assert len(answers[0]["billed"]) == 4  # a MoA answer keeps each of its calls, to be priced

    table = run_llm(
        "moa", "eval", str(source), "-m", "fake-a", "-m", "moa-default", "--grade", "contains"
    ).output
    header, first = table.splitlines()[:2]
    assert "$/prompt" in header and "$/correct" in header
    assert format_usd(by_model["fake-a"]["usd_per_prompt"]) in first.split()
    assert "Dollars are estimates" in table
    csv_rows = run_llm(
        "moa",
        "eval",
        str(source),
        "-m",
        "fake-a",
        "-m",
        "moa-default",
        "--grade",
        "contains",
        "--csv",
    ).output.splitlines()
    columns = csv_rows[0].split(",")
    fake_a = dict(zip(columns, csv_rows[1].split(",")))
    assert float(fake_a["usd_per_prompt"]) == pytest.approx(by_model["fake-a"]["usd_per_prompt"])
    assert fake_a["usd_complete"] == "True"


def test_eval_dollars_with_an_unpriced_model_are_a_lower_bound(tmp_path):
    source = write_rows(tmp_path / "q.jsonl")
    set_prices(fake_a=(1000, 2000))
    summary = json.loads(
        run_llm(
            "moa",
            "eval",
            str(source),
            "-m",
            "fake-a",
            "-m",
            "fake-b",
            "-m",
            "moa-default",
            "--grade",
            "contains",
            "--json",
        ).output
    )
    by_model = {c["model"]: c for c in summary["candidates"]}
    assert by_model["fake-a"]["usd_complete"] is True
    assert by_model["fake-b"]["usd_complete"] is False and by_model["fake-b"]["usd_missing"] == [
        "fake-b unpriced"
    ]
    assert (
        by_model["moa-default"]["usd_complete"] is True
    )  # the default model, fake-a, makes all its calls
    table = run_llm(
        "moa", "eval", str(source), "-m", "fake-a", "-m", "fake-b", "--grade", "contains"
    ).output
    row = next(line for line in table.splitlines() if line.startswith("fake-b "))
    assert " ? " in row and "$0 " not in row
    assert "≥ marks a lower bound and ? an unknown: fake-b unpriced." in table


def test_a_capped_eval_stops_at_its_cap_and_resumes(tmp_path):
    source = write_rows(tmp_path / "q.jsonl", count=8)
    set_prices(
        fake_a=(0, 1_000_000)
    )  # a dollar per output token: each answer costs $4 (four words)
    args = [
        "moa",
        "eval",
        str(source),
        "-m",
        "fake-a",
        "--grade",
        "contains",
        "--concurrency",
        "1",
        "--max-cost",
        "10",
    ]
    first = run_llm(*args)
    assert first.exit_code == 0, first.output
    assert len(read_calls()) == 3  # $4, $8, then $12 reached the cap: no fourth call
    assert first.stderr.strip() == (
        f"Stopped at the --max-cost cap of $10.00: this run's calls cost $12.00; 3 of 8 answers are made. "
        f"Paid answers are kept in {tmp_path / 'q.eval.jsonl'}: run the same command again to go on."
    )
    assert "3/8" in first.stdout
    assert len([r for r in results(tmp_path / "q.eval.jsonl") if r["type"] == "answer"]) == 3

    second = run_llm(*args)  # resumes: the paid answers are not made again
    assert "6 of 8 answers are made" in second.stderr
    assert len(read_calls()) == 6
    assert len({call["prompt"] for call in read_calls()}) == 6
    third = run_llm(*args)
    assert third.stderr == "" and "8/8" in third.stdout and len(read_calls()) == 8


def test_a_cap_is_refused_when_a_model_is_unpriced(tmp_path):
    source = write_rows(tmp_path / "q.jsonl")
    set_prices(fake_a=(1, 1))
    result = run_llm(
        "moa",
        "eval",
        str(source),
        "-m",
        "fake-a",
        "-m",
        "fake-b",
        "--grade",
        "contains",
        "--max-cost",
        "1",
    )
    assert result.exit_code == 1
    assert result.output == (
        "Error: --max-cost needs a price for every model the eval calls; unpriced: "
        "fake-b (llm moa prices set MODEL INPUT OUTPUT)\n"
    )
    assert read_calls() == []
    assert not (tmp_path / "q.eval.jsonl").exists()


def test_a_cap_counts_the_models_a_moa_model_calls(tmp_path):
    source = write_rows(tmp_path / "q.jsonl")
    set_prices(fake_a=(1, 1))
    assert (
        run_llm(
            "moa", "save", "mixed", "-o", "proposers", "fake-a,fake-b", "-o", "aggregator", "fake-c"
        ).exit_code
        == 0
    )
    result = run_llm(
        "moa", "eval", str(source), "-m", "moa-mixed", "--grade", "contains", "--max-cost", "1"
    )
    assert result.exit_code == 1
    assert "unpriced: fake-b, fake-c (llm moa prices set" in result.output
    assert read_calls() == []


@pytest.mark.parametrize(
    "value, problem",
    [
        ("-1", "must be a finite number of dollars, more than 0"),
        ("0", "must be a finite number of dollars, more than 0"),
        ("nan", "must be a finite number of dollars, more than 0"),
        ("inf", "must be a finite number of dollars, more than 0"),
        ("lots", "expected a number of US dollars, e.g. 0.50"),
    ],
)
def test_a_bad_cap_is_one_line_naming_it(value, problem, tmp_path):
    source = write_rows(tmp_path / "q.jsonl")
    set_prices(fake_a=(1, 1))
    result = run_llm(
        "moa", "eval", str(source), "-m", "fake-a", "--grade", "contains", "--max-cost", value
    )
    assert result.exit_code == 1
    assert result.output == f"Error: Invalid --max-cost {value!r}: {problem}\n"
    assert read_calls() == []
