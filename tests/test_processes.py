"""Real `llm` processes: Ctrl-C, and many runs in parallel against one user dir."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import WRAPPER, interrupt, spawn, turns, wait_for_started


def test_ctrl_c_while_proposers_run(user_path):
    plain = spawn(user_path, "-m", "fake-a", "-o", "hang", "1", "q")
    wait_for_started(user_path, 1)
    _, _, plain_err = interrupt(plain)

    process = spawn(user_path, "-m", "moa-default", "-o", "proposer_options", '{"hang": true}', "q")
    wait_for_started(user_path, 1 + 3)
    elapsed, stdout, stderr = interrupt(process)
    assert elapsed < 1.0
    assert process.returncode == plain.returncode != 0  # the usual interrupted status
    assert "Aborted!" in stderr and "Aborted!" in plain_err
    assert "Traceback" not in stderr
    assert stdout == ""
    assert len(turns(user_path)) == 0


def test_ctrl_c_while_aggregating_keeps_the_proposals(user_path):
    process = spawn(
        user_path,
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a,fake-b",
        "-o",
        "aggregator_options",
        '{"hang": true}',
        "q",
    )
    wait_for_started(user_path, 3)
    elapsed, _, stderr = interrupt(process)
    assert elapsed < 1.0
    assert process.returncode != 0
    assert "The 2 answered proposals are saved; show them with: llm moa unfinished" in stderr
    assert "Traceback" not in stderr
    assert len(turns(user_path)) == 0
    saved = list((user_path / "moa" / "unfinished").glob("*.json"))
    assert len(saved) == 1
    assert json.loads(saved[0].read_text())["error"] == "interrupted"


def run_many(user_path, count, extra=()):
    def one(i):
        process = spawn(
            user_path,
            "-m",
            "moa-default",
            "-o",
            "proposers",
            "fake-a,fake-b",
            "-o",
            "aggregator",
            "fake-c",
            *extra(i),
            f"question {i}",
        )
        stdout, stderr = process.communicate(timeout=60)
        return process.returncode, stdout, stderr

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_parallel_processes_all_answer(user_path):
    warm = spawn(user_path, "-m", "fake-a", "warm up")  # create the logs database once
    warm.communicate(timeout=30)
    results = run_many(user_path, 8, extra=lambda i: ())
    for i, (code, stdout, stderr) in enumerate(results):
        assert stdout == f"fake-c answers: question {i}\n"
        # llm itself can lose a log row under parallel writers (llm issue #789);
        # the plugin adds no database writes of its own
        assert code == 0 or stderr.strip().endswith("database is locked"), stderr


def test_parallel_processes_with_a_database_each_lose_nothing(user_path):
    results = run_many(user_path, 8, extra=lambda i: ("-d", str(user_path / f"logs-{i}.db")))
    assert [code for code, _, _ in results] == [0] * 8
    for i in range(8):
        conn = sqlite3.connect(user_path / f"logs-{i}.db")
        assert conn.execute("select count(*) from turns").fetchone()[0] == 1
        conn.close()


@pytest.mark.parametrize("when", ["proposers", "aggregator"])
def test_cancelling_an_async_run_stops_it(when):
    import asyncio

    import llm

    hang = '{"hang": true}'
    options = {"proposer_options": hang} if when == "proposers" else {"aggregator_options": hang}

    async def run():
        model = llm.get_async_model("moa-default")
        task = asyncio.ensure_future(model.prompt("q", proposers="fake-a,fake-b", **options).text())
        await asyncio.sleep(0.5)
        task.cancel()
        start = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - start

    assert asyncio.run(run()) < 0.5


def unfinished_files(user_path, prompt="saved?"):
    "Unfinished runs of this prompt (an abandoned run of an earlier test may still save its own)."
    files = (user_path / "moa" / "unfinished").glob("*.json")
    return [path for path in files if json.loads(path.read_text())["prompt"] == prompt]


def stopped_at_once(process, sig=signal.SIGINT):
    "Signal the process; it must exit within a second, non-zero, without a traceback."
    elapsed, stdout, stderr = interrupt(process, sig)
    assert elapsed < 1.0
    assert process.returncode != 0 and "Traceback" not in stderr
    return stdout, stderr


def assert_kept(user_path, stderr):
    "No log row, and the paid proposals saved and said so."
    assert len(turns(user_path)) == 0
    assert len(unfinished_files(user_path)) == 1
    assert "llm moa unfinished" in stderr


@pytest.mark.parametrize(
    "sig, mode",
    [(signal.SIGINT, ()), (signal.SIGTERM, ()), (signal.SIGINT, ("--async",))],
    ids=["SIGINT", "SIGTERM", "SIGINT --async"],
)
def test_signal_while_aggregating_keeps_the_proposals(user_path, sig, mode):
    process = spawn(
        user_path,
        *mode,
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a,fake-b",
        "-o",
        "aggregator_options",
        '{"hang": true}',
        "saved?",
    )
    wait_for_started(user_path, 3)
    _, stderr = stopped_at_once(process, sig)
    assert "The 2 answered proposals are saved" in stderr
    assert_kept(user_path, stderr)


def test_sigterm_while_proposers_run_exits_at_once(user_path):
    process = spawn(
        user_path, "-m", "moa-default", "-o", "proposer_options", '{"hang": true}', "saved?"
    )
    wait_for_started(user_path, 3)
    stdout, _ = stopped_at_once(process, signal.SIGTERM)
    assert stdout == "" and len(turns(user_path)) == 0
    assert unfinished_files(user_path) == []  # nothing was paid for: nothing to keep


def test_ctrl_c_while_the_answer_streams_keeps_the_proposals(user_path):
    # a long, fast answer: the interrupt lands while llm itself prints it
    answer = " ".join(f"w{i}" for i in range(4000))
    aggregator = json.dumps({"model": "fake-c", "options": {"text": answer, "chunk_delay": 0.001}})
    process = spawn(
        user_path,
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a,fake-b",
        "-o",
        "aggregator",
        aggregator,
        "saved?",
    )
    wait_for_started(user_path, 3)
    process.stdout.read(200)  # the answer is being printed
    _, stderr = stopped_at_once(process)
    assert_kept(user_path, stderr)


# --- a model that leaves the process writing into /dev/null -----------------


def vandal(damage, **options):
    return json.dumps({"model": "fake-vandal", "options": {"damage": damage, **options}})


def finished(process):
    stdout, stderr = process.communicate(timeout=30)
    return process.returncode, stdout, stderr


@pytest.mark.parametrize("damage", ["fds", "objects", "both"])
def test_the_answer_reaches_stdout_whatever_a_model_does_to_the_streams(user_path, damage):
    proposers = json.dumps(["fake-a", json.loads(vandal(damage))])
    code, stdout, stderr = finished(
        spawn(
            user_path,
            "-m",
            "moa-default",
            "-o",
            "proposers",
            proposers,
            "-o",
            "aggregator",
            "fake-c",
            "q",
        )
    )
    assert (code, stdout, stderr) == (0, "fake-c answers: q\n", "")


def test_errors_and_the_degraded_run_line_reach_stderr_after_a_model_broke_the_streams(user_path):
    failing = {"model": "fake-b", "options": {"fail": "boom"}}
    proposers = json.dumps([json.loads(vandal("both")), failing, "fake-a"])
    code, stdout, stderr = finished(
        spawn(
            user_path, "-m", "moa-default", "-o", "proposers", proposers, "-o", "retries", "0", "q"
        )
    )
    assert code == 0 and stdout.endswith("answers: q\n")
    assert stderr == "moa: 2 of 3 proposers answered (fake-b: boom)\n"

    aggregator = json.dumps({"model": "fake-c", "options": {"fail": "no capacity"}})
    proposers = json.dumps([json.loads(vandal("both")), "fake-a"])
    code, stdout, stderr = finished(
        spawn(
            user_path,
            "-m",
            "moa-default",
            "-o",
            "proposers",
            proposers,
            "-o",
            "aggregator",
            aggregator,
            "-o",
            "retries",
            "0",
            "saved?",
        )
    )
    assert code == 1 and stdout == ""
    assert "Error: " in stderr and "no capacity" in stderr
    assert "The 2 answered proposals are saved" in stderr


def test_ctrl_c_is_reported_after_a_model_broke_the_streams(user_path):
    process = spawn(
        user_path,
        "-m",
        "moa-default",
        "-o",
        "proposers",
        json.dumps([json.loads(vandal("both")), "fake-a"]),
        "-o",
        "aggregator_options",
        '{"hang": true}',
        "saved?",
    )
    wait_for_started(user_path, 3)
    _, stderr = stopped_at_once(process)
    assert "The 2 answered proposals are saved" in stderr and "Aborted!" in stderr


def test_progress_is_drawn_on_the_terminal_after_a_model_broke_the_streams(user_path):
    from conftest import run_with_terminal_stderr

    proposers = json.dumps(
        [json.loads(vandal("fds", delay=0.3)), {"model": "fake-b", "options": {"delay": 1.0}}]
    )
    stdout, stderr = run_with_terminal_stderr(
        user_path,
        "-m",
        "moa-default",
        "-o",
        "proposers",
        proposers,
        "-o",
        "aggregator",
        "fake-a",
        "q",
    )
    assert stdout == "fake-a answers: q\n"
    # drawn after the damage: the vandal's call is over while fake-b still runs
    assert re.search(r"layer 1 +fake-vandal +done in", stderr)
    assert stderr.rstrip().endswith("\x1b[J")  # and erased, on the same terminal


def test_a_long_chat_keeps_no_file_descriptors_per_turn(user_path):
    "Each turn's run used to keep two copies of stdout and stderr until the chat ended: 28 turns in 64 files."
    import resource

    def few_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    chat = [sys.executable, str(WRAPPER), "chat", "-m", "moa-default", "-o", "proposers", "fake-a"]
    result = subprocess.run(
        [*chat, "-o", "aggregator", "fake-b"],
        input="hi\n" * 40 + "quit\n",
        env={**os.environ, "LLM_USER_PATH": str(user_path)},
        capture_output=True,
        text=True,
        preexec_fn=few_files,
        timeout=120,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.count("fake-b answers") == 40
