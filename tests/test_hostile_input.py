"""Property-based: any option values give an answer or one clear error, never a traceback."""

import inspect
import json

import llm
import pydantic
import pytest
from conftest import logged_json, run_llm, turns
from fake_models import read_calls
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llm_moa.core.options import MoaOptions

OPTION_NAMES = tuple(MoaOptions.model_fields)

MODELS = st.sampled_from(
    ["fake-a", "alias-b", "fake-c*2", "nope", "moa-default", "", " ", "fake-a*999"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        ["nan", "inf", "-1", "0", "1", "2", "3", "all", "true", "off", "1e400", "[", "{"]
    ),
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["model", "options", "temperature", "bogus", "delay", ""]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=12,
)
MEMBER = st.one_of(
    MODELS,
    st.fixed_dictionaries(
        {"model": MODELS},
        optional={
            "options": st.dictionaries(
                st.sampled_from(["temperature", "text", "bogus"]), SCALARS, max_size=2
            )
        },
    ),
)
VALUES = {
    "proposers": st.one_of(st.lists(MEMBER, max_size=6), MODELS, JSONISH),
    "aggregator": st.one_of(MODELS, st.lists(MEMBER, max_size=3), JSONISH),
    "proposer_options": st.one_of(
        st.dictionaries(st.sampled_from(["temperature", "text", "x"]), SCALARS, max_size=2), JSONISH
    ),
    "aggregator_options": JSONISH,
}
OPTIONS = st.dictionaries(
    st.one_of(st.sampled_from(OPTION_NAMES), st.text(min_size=1, max_size=12)),
    JSONISH,
    max_size=4,
).flatmap(lambda d: st.fixed_dictionaries({k: VALUES.get(k, JSONISH) for k in d}))


def as_cli_value(value):
    return value if isinstance(value, str) else json.dumps(value)


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(options=OPTIONS)
def test_cli_never_crashes(options, user_path):
    args = []
    for name, value in options.items():
        if value is None or (
            isinstance(name, str) and (not name.isprintable() or name.startswith("-"))
        ):
            continue
        args += ["-o", name, as_cli_value(value)]
    calls_before, turns_before = len(read_calls()), len(turns(user_path))
    result = run_llm("-m", "moa-default", "-o", "timeout", "5", *args, "question")
    assert "Traceback" not in result.output
    event("answered" if result.exit_code == 0 else "refused")
    if result.exit_code == 0:
        assert result.stdout.endswith("question\n")
        assert len(turns(user_path)) == turns_before + 1
        return
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert len(turns(user_path)) == turns_before
    if (
        len(read_calls()) == calls_before
    ):  # refused before any call: one line, or llm's `field` / message
        lines = result.stderr.rstrip("\n").split("\n")
        assert len(lines) == 1 or all(line.startswith("  ") for line in lines[1::2]), result.stderr


@SETTINGS
@given(options=OPTIONS)
def test_python_api_raises_only_value_error_or_model_error(options):
    calls_before = len(read_calls())
    model = llm.get_model("moa-default")
    own = set(inspect.signature(llm.Model.prompt).parameters) | {"key"}  # llm's, not ours
    options = {
        k: v for k, v in options.items() if isinstance(k, str) and k.isidentifier() and k not in own
    }
    try:
        text = model.prompt("question", **{"timeout": 5, **options}).text()
    except pydantic.ValidationError:  # llm's own check of the options, as for every model
        assert len(read_calls()) == calls_before
    except ValueError as ex:
        assert len(read_calls()) == calls_before
        assert "\n" not in str(ex)
    except llm.ModelError:
        pass
    else:
        assert text.endswith("question")


def _paths(value, prefix=()):
    "Every place in a JSON value, as a tuple of keys and indexes."
    yield prefix
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, inner in items:
        yield from _paths(inner, (*prefix, key))


def _replaced(value, path, new):
    if not path:
        return new
    value = json.loads(json.dumps(value))
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return value


_LOGGED: dict = {}


def _logged_record(user_path):
    "The id and expanded response_json of one real run, logged once per test (examples share the user dir)."
    if user_path not in _LOGGED:
        proposers = json.dumps(["fake-a", {"model": "fake-b", "options": {"fail": "down"}}])
        result = run_llm(
            "-m", "moa-default", "-o", "proposers", proposers, "-o", "retries", "0", "q"
        )
        assert result.exit_code == 0, result.output
        (row,) = json.loads(run_llm("logs", "-n", "1", "--json").output)
        _LOGGED[user_path] = row["id"], row["response_json"]
    return _LOGGED[user_path]


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_views_never_crash_on_a_damaged_run_record(data, user_path):
    import sqlite3

    turn_id, record = _logged_record(user_path)
    path = data.draw(st.sampled_from(list(_paths(record))))
    damaged = _replaced(record, path, data.draw(JSONISH))
    conn = sqlite3.connect(user_path / "logs.db")
    with conn:
        conn.execute(
            "update turns set response_json = ? where id = ?", [json.dumps(damaged), turn_id]
        )
    conn.close()
    for command in (["runs"], ["runs", "--json"], ["show"], ["show", "--json"], ["show", turn_id]):
        result = run_llm("moa", *command)
        event(f"{command[0]}: {'shown' if result.exit_code == 0 else 'refused'}")
        if result.exit_code:
            assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, (
                result.stderr
            )


# --- hostile model answers ------------------------------------------------------

LONE_SURROGATE = "half a pair: \ud800"


@pytest.mark.parametrize(
    "options", [{}, {"aggregate": "select", "aggregator_options": {"text": "CHOICE: 2"}}]
)
def test_a_lone_surrogate_in_an_answer_never_crashes_a_run(options):
    "It reaches no other model, no print and no log: it is U+FFFD from the moment it arrives."
    proposers = [
        {"model": "fake-a", "options": {"text": LONE_SURROGATE}},
        {"model": "fake-b", "options": {"text": "fine"}},
    ]
    model = llm.get_model("moa-default")
    response = model.prompt("q", proposers=proposers, aggregator="fake-c", **options)
    text = response.text()
    record = response.json()["moa"]
    assert record["proposer_layers"][0]["proposers"][0]["text"] == "half a pair: \ufffd"
    if options:
        assert text in ("half a pair: \ufffd", "fine") and record["decision"]["fallback"] is False
    else:
        assert text == "fake-c answers: q"
        aggregator = [c for c in read_calls() if c["model"] == "fake-c"][0]
        assert "half a pair: \ufffd" in aggregator["system"]


def test_a_lone_surrogate_in_the_answer_is_printed_and_logged(user_path):
    answer = json.dumps([{"model": "fake-a", "options": {"text": LONE_SURROGATE}}] * 2)
    result = run_llm("-m", "moa-default", "-o", "proposers", answer, "-o", "aggregate", "vote", "q")
    assert result.exit_code == 0, result.output
    assert result.stdout == "half a pair: \ufffd\n"
    assert logged_json()[0]["response"] == "half a pair: \ufffd"
