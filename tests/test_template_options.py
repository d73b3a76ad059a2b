"""A template's options beat saved defaults, as for every llm model (README: "Options")."""

import pytest
from conftest import models_called, run_llm
from fake_models import read_calls


@pytest.fixture
def saved_defaults():
    for key, value in [("aggregator", "fake-b"), ("proposers", "fake-b")]:
        assert run_llm("models", "options", "set", "moa-default", key, value).exit_code == 0


def save_template(*options):
    saved = run_llm("-m", "moa-default", *options, "--save", "panel")
    assert saved.exit_code == 0, saved.output


def test_a_templates_options_beat_saved_defaults(saved_defaults):
    save_template("-o", "aggregator", "fake-c", "-o", "proposers", "fake-a")
    result = run_llm("-t", "panel", "q")
    assert result.stdout == "fake-c answers: q\n"
    assert models_called() == ["fake-a", "fake-c"]  # neither saved fake-b was called


def test_saved_defaults_fill_in_what_the_template_leaves_out(saved_defaults):
    save_template("-o", "aggregator", "fake-c")
    assert run_llm("-t", "panel", "q").stdout == "fake-c answers: q\n"
    assert models_called() == ["fake-b", "fake-c"]  # the saved proposers


def test_a_typed_option_beats_the_template(saved_defaults):
    save_template("-o", "aggregator", "fake-c", "-o", "proposers", "fake-a")
    assert run_llm("-t", "panel", "-o", "aggregator", "fake-a", "q").stdout == "fake-a answers: q\n"
    assert models_called() == ["fake-a", "fake-a"]


def test_a_plain_model_gets_its_templates_option_too():
    # the reference behaviour: llm itself gives a template's option precedence
    assert run_llm("models", "options", "set", "fake-a", "temperature", "0.9").exit_code == 0
    assert run_llm("-m", "fake-a", "-o", "temperature", "0.1", "--save", "plain").exit_code == 0
    assert run_llm("-t", "plain", "q").exit_code == 0
    assert read_calls()[-1]["options"] == {"temperature": 0.1}
