"""The offline quick start on the real local model (Gemma 3 270M via llama.cpp).

These tests run the real model through the real CLI. They are skipped when the
``local`` extra is not installed, unless ``LLM_MOA_REQUIRE_LOCAL=1`` (as in CI),
where a missing runtime fails instead. The model file is assembled once per
session and shared through ``$LLM_MOA_MODELS_DIR``; the tests that simulate a
missing extra need no model and always run.
"""

import json
import os
import subprocess
import sys

import llm
import pytest
from conftest import logged_json, run_llm, turns

from llm_moa import local

REQUIRED = os.environ.get("LLM_MOA_REQUIRE_LOCAL") == "1"
INSTALLED = local.local_extra_installed()
MODEL = local.MODEL_ID
SHORT = ["-o", "max_tokens", "32"]

real_model = pytest.mark.skipif(
    not INSTALLED and not REQUIRED,
    reason=f"the local extra is not installed ({local.INSTALL_HINT}); set LLM_MOA_REQUIRE_LOCAL=1 to fail instead",
)


@pytest.fixture(scope="session")
def shared_models_dir(tmp_path_factory):
    "One assembled model file for the whole session."
    folder = tmp_path_factory.mktemp("moa-models")
    if INSTALLED:
        previous = os.environ.get(local.MODELS_DIR_ENV)
        os.environ[local.MODELS_DIR_ENV] = str(folder)
        try:
            local.model_path()
        finally:
            if previous is None:
                del os.environ[local.MODELS_DIR_ENV]
            else:
                os.environ[local.MODELS_DIR_ENV] = previous
    return folder


@pytest.fixture
def models_dir(shared_models_dir, monkeypatch):
    monkeypatch.setenv(local.MODELS_DIR_ENV, str(shared_models_dir))
    return shared_models_dir


def test_runtime_is_installed_when_required():
    if not REQUIRED:
        pytest.skip("LLM_MOA_REQUIRE_LOCAL is not set")
    assert INSTALLED, (
        f"LLM_MOA_REQUIRE_LOCAL=1 but the local extra is missing: {local.INSTALL_HINT}"
    )


@real_model
def test_moa_local_end_to_end(models_dir, user_path):
    result = run_llm(
        "-m",
        "moa-local",
        "-o",
        "proposer_options",
        '{"max_tokens": 48}',
        "-o",
        "aggregator_options",
        '{"max_tokens": 48, "temperature": 0.3}',
        "Why is the sky blue?",
    )
    assert result.exit_code == 0, result.output
    answer = result.stdout.strip()
    assert answer

    [turn] = turns(user_path)
    [logged] = logged_json()
    moa = logged["response_json"]["moa"]
    [layer] = moa["proposer_layers"]
    proposals = layer["proposers"]
    assert [p["model"] for p in proposals] == [MODEL] * 3
    assert [p["options"]["temperature"] for p in proposals] == [0.5, 0.8, 1.0]
    assert all(p["status"] == "ok" and p["text"].strip() for p in proposals)
    aggregator = moa["aggregator"]
    assert aggregator["model"] == MODEL and aggregator["status"] == "ok"
    assert aggregator["text"].strip() == answer

    # max_concurrency 1: each call starts after the previous one ended
    calls = proposals + [aggregator]
    for before, after in zip(calls, calls[1:]):
        assert after["started_ms"] >= before["ended_ms"]

    # true usage: llama.cpp's token counts, summed over the four calls
    usages = [c["usage"] for c in calls]
    assert all(u["input"] > 0 and u["output"] > 0 for u in usages)
    assert turn["input_tokens"] == sum(u["input"] for u in usages)
    assert turn["output_tokens"] == sum(u["output"] for u in usages)
    assert json.loads(turn["token_details"])["moa_calls"] == 4


@real_model
def test_local_model_options_and_seed(models_dir, user_path):
    args = [
        "-m",
        MODEL,
        "-o",
        "seed",
        "7",
        "-o",
        "temperature",
        "0.9",
        *SHORT,
        "Name three fruits.",
    ]
    first, second = run_llm(*args), run_llm(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip()
    assert second.stdout == first.stdout  # same seed and options: same answer
    logged = turns(user_path)
    assert len(logged) == 2
    for turn in logged:
        assert 0 < turn["output_tokens"] <= 32
        assert turn["input_tokens"] > 5
        assert json.loads(turn["options_json"]) == {"seed": 7, "temperature": 0.9, "max_tokens": 32}


@real_model
def test_local_model_streams(models_dir):
    model = llm.get_model(MODEL)
    response = model.prompt("Describe the ocean.", max_tokens=32, seed=1)
    chunks = list(response)
    assert len([c for c in chunks if c]) > 3
    usage = response.usage()
    assert usage.input > 0 and usage.output > 0


THREADS_SCRIPT = """
import json, sys, threading
from llm_moa import local

first, second = local.LocalModel(), local.LocalModel()
options = dict(max_tokens=24, temperature=0, seed=3)
expected = first.prompt("What is rain?", **options).text()
answers, errors = [], []

def ask(model):
    try:
        answers.append(model.prompt("What is rain?", **options).text())
    except Exception as ex:
        errors.append(repr(ex))

threads = [threading.Thread(target=ask, args=(m,)) for m in (first, second)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"expected": expected, "answers": answers, "errors": errors,
                  "runtimes": len(local._runtimes)}))
"""


@real_model
def test_two_threads_with_two_model_objects(models_dir):
    """Two model objects share one llama.cpp instance; its lock keeps the threads apart.

    Without the lock llama.cpp aborts the process, so this runs in a process of its own.
    """
    result = subprocess.run(
        [sys.executable, "-c", THREADS_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    report = json.loads(result.stdout)
    assert report["errors"] == []
    assert report["expected"].strip()
    assert report["answers"] == [report["expected"]] * 2
    assert report["runtimes"] == 1


def test_prompt_is_a_question_answer_transcript():
    from llm.parts import Message, TextPart

    def message(role, text):
        return Message(role=role, parts=[TextPart(text=text)])

    model = local.LocalModel()
    history = [
        message("system", "Be brief."),
        message("user", "Hi?"),
        message("assistant", "Hello."),
    ]
    prompt = llm.Prompt("And you?", model, messages=history)
    assert local.completion_prompt(prompt) == (
        f"Be brief.\n\n{local.PREAMBLE}\n\nQuestion: Hi?\nAnswer: Hello.\nQuestion: And you?\nAnswer:"
    )
    single = llm.Prompt("Why?", model, system="Answer in French.")
    assert (
        local.completion_prompt(single)
        == f"Answer in French.\n\n{local.PREAMBLE}\n\nQuestion: Why?\nAnswer:"
    )


@pytest.mark.parametrize("model_id", ["moa-local", MODEL])
def test_missing_extra_is_one_clear_line(model_id, monkeypatch, user_path, tmp_path):
    monkeypatch.setattr(local, "RUNTIME_PACKAGE", "llama_cpp_is_not_installed")
    monkeypatch.setenv(local.MODELS_DIR_ENV, str(tmp_path / "models"))
    result = run_llm("-m", model_id, "hi")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        result.stderr == f"Error: {model_id} needs the local extra: pip install 'llm-moa[local]'\n"
    )
    assert turns(user_path) == []
    assert not (tmp_path / "models").exists()


def test_local_models_are_listed(monkeypatch):
    monkeypatch.setattr(local, "RUNTIME_PACKAGE", "llama_cpp_is_not_installed")
    result = run_llm("models")
    assert result.exit_code == 0, result.output
    assert f"Local: {MODEL} (not installed: pip install 'llm-moa[local]')" in result.stdout
    assert "MoA: moa-local" in result.stdout
