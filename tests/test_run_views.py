"""Seeing runs: live progress, proposals as reasoning, `llm moa runs` and `llm moa show`."""

import json
import sqlite3

import pytest
from conftest import moa, run_llm, run_with_terminal_stderr

SLOW_C = json.dumps(["fake-a", "fake-b", {"model": "fake-c", "options": {"delay": 0.6}}])


def test_no_progress_when_stderr_is_not_a_terminal():
    result = moa("-o", "proposers", SLOW_C, "-o", "aggregator", "fake-a", "q")
    assert result.stderr == ""
    assert result.stdout == "fake-a answers: q\n"


def test_live_progress_on_a_terminal(user_path):
    stdout, stderr = run_with_terminal_stderr(
        user_path, "-m", "moa-default", "-o", "proposers", SLOW_C, "-o", "aggregator", "fake-a", "q"
    )
    assert stdout == "fake-a answers: q\n"  # nothing but the answer on stdout
    assert "layer 1    fake-c" in stderr and "running" in stderr
    assert "done in" in stderr
    assert "\x1b[J" in stderr  # the block is erased before the answer


def test_progress_can_be_turned_off(user_path):
    args = ["-m", "moa-default", "-o", "proposers", SLOW_C, "q"]
    _, shown = run_with_terminal_stderr(user_path, *args)
    stdout, stderr = run_with_terminal_stderr(user_path, *args, "-o", "progress", "false")
    assert "layer 1    fake-c" in shown  # the same run on a terminal shows it
    assert stdout == "fake-a answers: q\n" and "layer 1" not in stderr and "done in" not in stderr


def test_show_proposals_as_reasoning():
    result = moa(
        "-o",
        "proposers",
        "fake-a,fake-b",
        "-o",
        "aggregator",
        "fake-c",
        "-o",
        "show_proposals",
        "1",
        "q",
    )
    assert result.stdout == "fake-c answers: q\n"
    assert "[layer 1, proposer 1: fake-a]\nfake-a answers: q" in result.stderr
    logged = run_llm("logs", "-n", "1").output
    assert "## Reasoning" in logged and "[layer 1, proposer 2: fake-b]" in logged


def test_reasoning_from_proposals_stays_out_of_the_next_turn():
    moa(
        "-o",
        "proposers",
        "fake-a",
        "-o",
        "aggregator",
        "fake-c",
        "-o",
        "show_proposals",
        "1",
        "first",
    )
    assert run_llm("-c", "second").exit_code == 0
    from fake_models import read_calls

    last = read_calls()[-1]
    assert all("[layer 1" not in m["text"] for m in last["messages"])


def test_runs_lists_recent_runs():
    moa("-o", "proposers", "fake-a,fake-b", "-o", "aggregator", "fake-c", "one")
    failing = json.dumps(["fake-a", {"model": "fake-b", "options": {"fail": "down"}}])
    moa("-o", "proposers", failing, "-o", "retries", "0", "-o", "aggregator", "fake-c", "two")
    assert run_llm("-m", "fake-a", "not a moa run").exit_code == 0
    text = run_llm("moa", "runs").output.splitlines()
    assert text[0].split() == [
        "id",
        "time",
        "(UTC)",
        "model",
        "proposers",
        "aggregator",
        "calls",
        "tokens",
        "in/out",
        "wall",
        "cost",
    ]
    assert len(text) == 3
    assert "1/2 ok (fake-b failed)" in text[1] and "2/2 ok" in text[2]
    runs = json.loads(run_llm("moa", "runs", "--json", "-n", "1").output)
    assert len(runs) == 1
    (run,) = runs
    assert run["model"] == "moa-default" and run["calls"] == 3 and run["aggregator"] == "fake-c"
    assert run["proposers"] == [
        {"model": "fake-a", "status": "ok", "error": None},
        {"model": "fake-b", "status": "failed", "error": "down"},
    ]
    assert run["input_tokens"] > 0 and run["wall_ms"] >= 0


def test_runs_reads_another_database(tmp_path):
    db = tmp_path / "other.db"
    moa("-o", "proposers", "fake-a", "-d", str(db), "elsewhere")
    assert run_llm("moa", "runs").stderr.startswith(
        "Error: No log database found at "
    )  # as llm logs
    assert len(json.loads(run_llm("moa", "runs", "--json", "-d", str(db)).output)) == 1
    missing = run_llm("moa", "runs", "-d", str(tmp_path / "none.db"))
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: No log database found at ")


def test_show_the_latest_run_with_a_timeline():
    moa("-o", "proposers", SLOW_C, "-o", "aggregator", "fake-a", "-s", "Be brief", "Why?")
    text = run_llm("moa", "show").output
    assert text.startswith("# MoA run ")
    assert "## Prompt\n\nWhy?\n" in text and "## System\n\nBe brief\n" in text
    assert "### 3. fake-c · ok · 0.6" in text
    assert "## Aggregator: fake-a · ok" in text
    assert "## Answer\n\nfake-a answers: Why?\n" in text
    timeline = text.split("## Timeline\n\n")[1].splitlines()
    assert len(timeline) == 5  # axis + 3 proposers + aggregator
    slow = [line for line in timeline if "◀ slowest" in line]
    assert len(slow) == 1 and slow[0].startswith("L1 fake-c")
    bars = {line.split()[1]: line.split("|")[1] for line in timeline[1:]}
    assert bars["fake-c"].count("█") > 3 * bars["fake-b"].count("█")


def test_show_by_id_prefix_and_as_json():
    moa("-o", "proposers", "fake-a", "first")
    moa("-o", "proposers", "fake-b", "second")
    runs = json.loads(run_llm("moa", "runs", "--json").output)
    older = runs[1]["id"]
    shown = json.loads(run_llm("moa", "show", older[:20], "--json").output)
    assert shown["id"] == older and shown["prompt"] == "first"
    assert shown["moa"]["proposer_layers"][0]["proposers"][0]["model"] == "fake-a"
    missing = run_llm("moa", "show", "zzzz")
    assert missing.exit_code == 1 and missing.stderr == "Error: No MoA run matches 'zzzz'\n"


def test_show_with_nothing_logged():
    assert run_llm("-m", "fake-a", "not a MoA run").exit_code == 0
    result = run_llm("moa", "show")
    assert result.exit_code == 1 and result.stderr == "Error: No MoA runs logged yet\n"
    assert run_llm("moa", "runs").stdout == "No MoA runs logged yet.\n"


def edit_latest_record(user_path, change):
    "Apply ``change`` to the latest turn's run record in logs.db, as a hand edit would."
    conn = sqlite3.connect(user_path / "logs.db")
    with conn:
        turn_id, response_json = conn.execute(
            "select id, response_json from turns order by id desc limit 1"
        ).fetchone()
        data = json.loads(response_json)
        change(data["moa"])
        text = json.dumps(data).replace('"INFINITY"', "1e400")
        conn.execute("update turns set response_json = ? where id = ?", [text, turn_id])
    conn.close()
    return turn_id


def test_runs_count_must_not_be_negative():
    for prompt in ("one", "two", "three"):
        moa("-o", "proposers", "fake-a", prompt)
    result = run_llm("moa", "runs", "-n", "-1")
    assert (
        result.exit_code == 2
        and "Invalid value for '-n' / '--count': -1 is not in the range x>=0" in result.stderr
    )
    assert len(json.loads(run_llm("moa", "runs", "-n", "0", "--json").stdout)) == 3


def test_a_file_that_is_not_a_database(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello, not a database\n" * 200)
    for command in (["runs"], ["show"]):
        result = run_llm("moa", *command, "-d", str(other))
        assert result.exit_code == 1
        assert (
            result.stderr == f"Error: {other}: file is not a database\n"
        )  # what sqlite tells llm logs


def test_an_ambiguous_prefix_says_so():
    moa("-o", "proposers", "fake-a", "first")
    moa("-o", "proposers", "fake-b", "second")
    first, second = (run["id"] for run in json.loads(run_llm("moa", "runs", "--json").stdout))
    common = next(n for n in range(len(first)) if first[n] != second[n])
    result = run_llm("moa", "show", first[:common])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {first[:common]!r} is ambiguous: it matches 2 runs; give more of the id\n"
    )


def test_a_call_without_an_end_is_drawn_as_unfinished(user_path):
    moa("-o", "proposers", "fake-a,fake-b", "-o", "aggregator", "fake-c", "q")

    def abandoned(record):
        call = record["proposer_layers"][0]["proposers"][1]
        call.update(status="cancelled", started_ms=0)
        del call["ended_ms"]

    edit_latest_record(user_path, abandoned)
    timeline = run_llm("moa", "show").stdout.split("## Timeline\n\n")[1].splitlines()
    (line,) = [line for line in timeline if line.startswith("L1 fake-b")]
    assert line.endswith("0.00–? (no end recorded) cancelled")
    assert "░" in line and "█" not in line
    (done,) = [line for line in timeline if line.startswith("L1 fake-a")]
    assert "█" in done and "░" not in done


def test_runs_that_asked_no_proposer_in_the_last_layer():
    cascade = ["-o", "proposers", "fake-a,fake-a,fake-b", "-o", "cascade", "2", "-o", "layers", "3"]
    moa(*cascade, "q")  # the first two agree: layer 2 never runs
    table = run_llm("moa", "runs").stdout.splitlines()
    assert "2/2 ok" in table[1] and "0/0" not in table[1]
    tools = ["-o", "proposers", "fake-a,fake-b", "-o", "aggregator", "fake-tooler"]
    moa(*tools, "-T", "llm_version", "what version?")  # the second turn: the aggregator alone
    table = run_llm("moa", "runs").stdout.splitlines()
    assert table[1].split()[4:6] == ["-", "fake-tooler"]  # no proposer asked: '-'
    assert "2/2 ok" in table[2]


def test_show_json_has_no_infinity(user_path):
    moa("-o", "proposers", "fake-a", "q")
    edit_latest_record(
        user_path, lambda record: record["aggregator"].update(options={"temperature": "INFINITY"})
    )
    result = run_llm("moa", "show", "--json")
    assert result.exit_code == 0 and "Infinity" not in result.stdout
    shown = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(name))
    assert shown["moa"]["aggregator"]["options"]["temperature"] is None
