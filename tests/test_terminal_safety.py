"""Model output never drives the terminal: the views and the progress block show
control characters visibly (only the answer on stdout passes through as sent)."""

import json
import re
import sqlite3

from conftest import run_llm, run_with_terminal_stderr

CLIPBOARD = "\x1b]52;c;aGk=\x07"  # OSC 52: sets the clipboard to "hi"
CLEAR = "\x1b[2J"  # clears the screen
HOME = "\x1b[H"  # moves the cursor


def hostile_run():
    "A run whose proposals and aggregator answer or fail with escape sequences."
    proposers = json.dumps(
        [
            {"model": "fake-a", "options": {"text": f"{CLIPBOARD} hi"}},
            {"model": "fake-b", "options": {"fail": f"{CLEAR} boom"}},
        ]
    )
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        proposers,
        "-o",
        "retries",
        "0",
        "-o",
        "aggregator",
        "fake-c",
        "-o",
        "aggregator_options",
        json.dumps({"text": f"{HOME}answer"}),
        f"question{CLEAR}",
    )
    assert result.exit_code == 0, result.output


def test_show_and_runs_render_escapes_visibly():
    hostile_run()
    shown = run_llm("moa", "show")
    assert shown.exit_code == 0
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "\\x1b]52;c;aGk=\\x07 hi" in shown.stdout
    assert "Error: \\x1b[2J boom" in shown.stdout
    assert "## Answer\n\n\\x1b[Hanswer\n" in shown.stdout
    assert "## Prompt\n\nquestion\\x1b[2J\n" in shown.stdout
    runs = run_llm("moa", "runs")
    assert runs.exit_code == 0 and "\x1b" not in runs.stdout


def test_runs_table_renders_a_hostile_record_visibly(user_path):
    hostile_run()
    conn = sqlite3.connect(user_path / "logs.db")
    with conn:  # a record edited to carry escapes in its model names
        (raw,) = conn.execute("select response_json from turns").fetchone()
        conn.execute(
            "update turns set response_json = ?",
            [
                raw.replace('"fake-b"', json.dumps(f"{CLEAR}fake-b")).replace(
                    '"fake-c"', json.dumps(HOME)
                )
            ],
        )
    conn.close()
    runs = run_llm("moa", "runs")
    assert runs.exit_code == 0, runs.output
    assert "\x1b" not in runs.stdout
    assert "\\x1b[2Jfake-b failed" in runs.stdout and "\\x1b[H" in runs.stdout


def test_unfinished_runs_render_escapes_visibly():
    proposers = json.dumps([{"model": "fake-a", "options": {"text": f"{CLIPBOARD} hi"}}])
    failed = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        proposers,
        "-o",
        "retries",
        "0",
        "-o",
        "aggregator_options",
        json.dumps({"fail": f"{CLEAR} boom"}),
        "q",
    )
    assert failed.exit_code == 1
    run_id = failed.stderr.rsplit(" ", 1)[1].strip()
    listed = run_llm("moa", "unfinished")
    assert listed.exit_code == 0
    assert "\x1b" not in listed.stdout and "\\x1b[2J boom" in listed.stdout
    shown = run_llm("moa", "unfinished", run_id)
    assert shown.exit_code == 0
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "\\x1b]52;c;aGk=\\x07 hi" in shown.stdout and "\\x1b[2J boom" in shown.stdout


OWN_CODES = re.compile(r"\x1b\[\d*F|\x1b\[J")  # the progress block's cursor-up and erase


def test_progress_block_renders_errors_visibly(user_path):
    proposers = json.dumps(
        [
            {"model": "fake-a", "options": {"fail": f"{CLIPBOARD} boom"}},
            {"model": "fake-b", "options": {"fail": f"{CLEAR} " + "long " * 40}},
            {"model": "fake-c", "options": {"delay": 0.8}},
        ]
    )
    stdout, stderr = run_with_terminal_stderr(
        user_path, "-m", "moa-default", "-o", "proposers", proposers, "-o", "retries", "0", "q"
    )
    assert stdout == "fake-a answers: q\n"
    assert "failed: \\x1b]52;c;aGk=\\x07 boom" in stderr
    long_line = next(line for line in stderr.splitlines() if "failed: \\x1b[2J long long" in line)
    assert long_line.endswith("...")  # cut to the width after the escape was made visible
    assert "\x1b" not in OWN_CODES.sub("", stderr) and "\x07" not in stderr
