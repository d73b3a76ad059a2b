"""Presets as moa-NAME models, and the host's own mechanisms on every MoA model."""

import json
import os
import subprocess
import sys

import pytest
from conftest import WRAPPER, models_called, run_llm
from fake_models import read_calls


def save(*args):
    return run_llm("moa", "save", *args)


def test_save_run_list_remove(user_path):
    result = save(
        "research",
        "-o",
        "proposers",
        "fake-a,fake-b,alias-c",
        "-o",
        "aggregator",
        "fake-c",
        "-o",
        "layers",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Saved preset 'research' as model moa-research: 3 proposers, "
        "aggregator fake-c, 3 layers, 7 calls per prompt\n"
    )
    assert "MoA: moa-research" in run_llm("models").output

    ran = run_llm("-m", "moa-research", "hello")
    assert ran.exit_code == 0, ran.output
    assert ran.stdout == "fake-c answers: hello\n"
    assert len(read_calls()) == 7

    listed = run_llm("moa", "list")
    assert listed.output == (
        "moa-research: proposers fake-a, fake-b, alias-c; aggregator fake-c; "
        "3 layers; 7 calls per prompt\n"
    )
    (entry,) = json.loads(run_llm("moa", "list", "--json").output)
    assert entry["model_id"] == "moa-research"
    assert entry["options"] == {
        "proposers": ["fake-a", "fake-b", "alias-c"],
        "aggregator": "fake-c",
        "layers": 3,
    }
    assert entry["calls_per_prompt"] == 7 and entry["layers"] == 3

    removed = run_llm("moa", "remove", "research")
    assert removed.output == "Removed preset 'research' (model moa-research)\n"
    assert "moa-research" not in run_llm("models").output
    assert run_llm("moa", "list").output.startswith("No presets saved.")


def test_option_on_the_command_line_overrides_the_preset():
    assert (
        save(
            "two",
            "-o",
            "proposers",
            "fake-a,fake-b",
            "-o",
            "aggregator",
            "fake-c",
            "-o",
            "layers",
            "3",
        ).exit_code
        == 0
    )
    result = run_llm("-m", "moa-two", "-o", "layers", "2", "-o", "aggregator", "fake-a", "q")
    assert result.exit_code == 0, result.output
    assert models_called() == ["fake-a", "fake-a", "fake-b"]


def test_saving_over_a_preset_needs_force():
    assert save("p", "-o", "proposers", "fake-a").exit_code == 0
    again = save("p", "-o", "proposers", "fake-b")
    assert again.exit_code == 1
    assert again.stderr == "Error: Preset 'p' already exists; use --force to replace it\n"
    forced = save("p", "-o", "proposers", "fake-b", "--force")
    assert forced.output.startswith("Replaced preset 'p'")
    assert json.loads(run_llm("moa", "list", "--json").output)[0]["proposers"] == ["fake-b"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["Research", "-o", "proposers", "fake-a"], "Invalid preset name 'Research'"),
        (["a b", "-o", "proposers", "fake-a"], "Invalid preset name 'a b'"),
        (["evil\n", "-o", "proposers", "fake-a"], "Invalid preset name 'evil\\n'"),
        (
            ["default", "-o", "proposers", "fake-a"],
            "'default' is reserved for the built-in moa-default",
        ),
        (["x", "-o", "proposers", "nope"], "Unknown proposer model 'nope'"),
        (["x", "-o", "colour", "blue"], "colour: unknown option; allowed: proposers, aggregator"),
        (["x", "-o", "layers", "1"], "layers: Input should be greater than or equal to 2, got '1'"),
        (
            ["x", "-o", "proposer_options", '{"bogus": 1}'],
            "proposer fake-a: unknown option 'bogus'",
        ),
    ],
)
def test_bad_presets_are_refused_in_one_line(args, message, user_path):
    result = save(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}") and result.stderr.count("\n") == 1, (
        result.stderr
    )
    assert not (user_path / "moa" / "presets.json").exists()


def test_remove_unknown_preset():
    result = run_llm("moa", "remove", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: No preset named 'nope'; 'llm moa list' shows them\n"


def test_preset_whose_model_was_uninstalled_still_lists(user_path):
    assert save("old", "-o", "proposers", "fake-a", "-o", "aggregator", "fake-b").exit_code == 0
    path = user_path / "moa" / "presets.json"
    data = json.loads(path.read_text())
    data["old"]["options"]["proposers"] = ["gone-model"]  # as if its plugin were uninstalled
    path.write_text(json.dumps(data))
    assert "moa-old: proposers gone-model; aggregator fake-b" in run_llm("moa", "list").output
    result = run_llm("-m", "moa-old", "q")
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: Unknown proposer model 'gone-model'; run 'llm models' to list the available models\n"
    )


CRASH = """
import json, os, sys
sys.path.insert(0, {tests!r})
import fake_models; fake_models.register()
import llm_moa.files.storage as storage
real_dump = json.dump
def dump_then_die(data, fp, **kw):
    fp.write(json.dumps(data)[:20])  # half a file...
    fp.flush()
    os._exit(9)                      # ...and the process dies
storage.json.dump = dump_then_die
from llm.cli import cli
cli(["moa", "save", "second", "-o", "proposers", "fake-b"])
"""


def test_a_crash_while_saving_leaves_the_presets_intact(user_path):
    assert save("first", "-o", "proposers", "fake-a").exit_code == 0
    before = (user_path / "moa" / "presets.json").read_text()
    env = {**os.environ, "LLM_USER_PATH": str(user_path)}
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH.format(tests=str(WRAPPER.parent))], env=env
    )
    assert crashed.returncode == 9
    assert (user_path / "moa" / "presets.json").read_text() == before
    assert [e["name"] for e in json.loads(run_llm("moa", "list", "--json").output)] == ["first"]
    assert run_llm("-m", "moa-first", "q").exit_code == 0


def test_damaged_presets_file_does_not_break_llm(user_path):
    (user_path / "moa").mkdir()
    (user_path / "moa" / "presets.json").write_text("{not json")
    assert run_llm("models").exit_code == 0
    listed = run_llm("moa", "list")
    assert listed.exit_code == 1
    assert listed.stderr.startswith(
        f"Error: {user_path / 'moa' / 'presets.json'}: not valid JSON ("
    )


def test_models_options_set_applies_to_moa_models():
    assert (
        run_llm("models", "options", "set", "moa-default", "proposers", "fake-b,fake-c").exit_code
        == 0
    )
    assert run_llm("models", "options", "set", "moa-default", "aggregator", "fake-a").exit_code == 0
    result = run_llm("-m", "moa-default", "q")
    assert result.exit_code == 0, result.output
    assert models_called() == ["fake-a", "fake-b", "fake-c"]


def test_aliases_and_default_model_work_for_presets():
    assert (
        save("research", "-o", "proposers", "fake-b", "-o", "aggregator", "fake-c").exit_code == 0
    )
    assert run_llm("aliases", "set", "moa", "moa-research").exit_code == 0
    assert run_llm("-m", "moa", "q").stdout == "fake-c answers: q\n"
    assert run_llm("models", "default", "moa-research").exit_code == 0
    assert run_llm("plain default").stdout == "fake-c answers: plain default\n"


def test_templates_keep_a_combo():
    saved = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-b,fake-c",
        "-o",
        "aggregator",
        "fake-b",
        "--save",
        "combo",
    )
    assert saved.exit_code == 0, saved.output
    result = run_llm("-t", "combo", "templated")
    assert result.exit_code == 0, result.output
    assert result.stdout == "fake-b answers: templated\n"
    assert models_called() == ["fake-b", "fake-b", "fake-c"]


def test_python_api_uses_presets():
    import llm

    assert save("py", "-o", "proposers", "fake-b", "-o", "aggregator", "fake-c").exit_code == 0
    assert llm.get_model("moa-py").prompt("q").text() == "fake-c answers: q"
