import json
import os
import pty
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_models  # noqa: E402
from openai_fixtures import openai_server, srv_models  # noqa: E402,F401 - fixtures

fake_models.register()

TESTS = Path(__file__).resolve().parent
WRAPPER = TESTS / "llm_with_fakes.py"


@pytest.fixture(autouse=True)
def user_path(tmp_path, monkeypatch):
    "Every test gets its own LLM_USER_PATH, with fake-a as the default model."
    path = tmp_path / "llm-user"
    path.mkdir()
    monkeypatch.setenv("LLM_USER_PATH", str(path))
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name == "LLM_RAISE_ERRORS":
            monkeypatch.delenv(name)
    (path / "default_model.txt").write_text("fake-a")
    return path


def run_llm(*args, input=None):
    "Invoke the real llm CLI in-process."
    from llm.cli import cli

    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def moa(*args, ok=True, input=None):
    "The built-in moa-default through the real llm CLI; with ``ok``, asserting that it answered."
    result = run_llm("-m", "moa-default", *args, input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def record():
    "The latest run's record, as `llm logs --json` has it."
    return logged_json()[0]["response_json"]["moa"]


def calls(run: dict) -> list[dict]:
    "Every call's record: the proposers of each layer, then the aggregator."
    proposers = [c for layer in run["proposer_layers"] for c in layer["proposers"]]
    return proposers + [run["aggregator"]]


def show_json() -> dict:
    "What `llm moa show --json` prints for the latest run."
    result = run_llm("moa", "show", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def saying(*answers, model="fake-a"):
    "Proposers that answer these texts, in this order (a ``-o proposers`` value)."
    return json.dumps([{"model": model, "options": {"text": text}} for text in answers])


def references(system):
    "The answers an aggregator was shown, in the order shown."
    return re.findall(r"<<<BEGIN ANSWER \d+ \w+>>>\n(.*?)\n<<<END ANSWER", system, re.S)


def models_called():
    "The models the fakes saw called, sorted."
    from fake_models import read_calls

    return sorted(call["model"] for call in read_calls())


def evaluate(*args, input=None):
    "`llm moa eval ...`"
    return run_llm("moa", "eval", *args, input=input)


def results(path):
    "The rows of an eval's JSONL results file."
    return [json.loads(line) for line in path.read_text().splitlines()]


def set_prices(**by_model):
    "Prices per million tokens, as ``fake_a=(input, output)``, set with `llm moa prices set`."
    for model, (input_price, output_price) in by_model.items():
        result = run_llm(
            "moa", "prices", "set", model.replace("_", "-"), str(input_price), str(output_price)
        )
        assert result.exit_code == 0, result.output


def closed_port() -> str:
    "The address of a port nothing listens on (connections are refused)."
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def spawn(user_path, *args, code=None, **popen):
    """A real llm process (the CLI with the fakes; ``code``: Python run instead
    of the wrapper, with ``args`` as its argv), talking text on pipes; ``popen``:
    more arguments for ``subprocess.Popen``."""
    env = {**os.environ, "LLM_USER_PATH": str(user_path)}
    command = [sys.executable, *(["-c", code] if code else [str(WRAPPER)]), *args]
    return subprocess.Popen(
        command,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        **popen,
    )


def run_process(user_path, *args, timeout=60, **popen):
    "A real llm process run to its end, failing the test if it takes over ``timeout`` seconds."
    process = spawn(user_path, *args, **popen)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"llm {' '.join(args)} did not end within {timeout}s")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def wait_for_started(user_path, count, limit=15.0):
    "Wait until the fakes have started ``count`` calls (each appends to fake-started.jsonl)."
    path = user_path / "fake-started.jsonl"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} calls never started")


def interrupt(process, sig=signal.SIGINT, timeout=10):
    "Send SIGINT (or sig); return (seconds until exit, stdout, stderr)."
    start = time.monotonic()
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=timeout)
    return time.monotonic() - start, stdout, stderr


def turns(user_path):
    db = user_path / "logs.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("select * from turns order by id")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


REFINE = "answers that other assistants wrote to it in an earlier round"  # later layers' proposers


def by_role(calls):
    """Proposer and aggregator calls, told apart by what each model was asked:
    the aggregator gets references without the later proposers' instruction."""
    aggregators = [
        c for c in calls if "<<<BEGIN ANSWER" in c["system"] and REFINE not in c["system"]
    ]
    return [c for c in calls if c not in aggregators], aggregators


def logged_json(n=1):
    "The last n runs as `llm logs --json` shows them (response_json expanded)."
    result = run_llm("logs", "-n", str(n), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def run_with_terminal_stderr(user_path, *args):
    "A real llm process whose stderr is a pseudo-terminal; returns (stdout, stderr text)."
    master, slave = pty.openpty()
    env = {**os.environ, "LLM_USER_PATH": str(user_path), "COLUMNS": "100"}
    process = subprocess.Popen(
        [sys.executable, str(WRAPPER), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    stdout = process.stdout.read().decode()
    process.wait()
    os.close(master)
    return stdout, seen.decode(errors="replace")
