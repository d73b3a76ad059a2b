"""`llm moa eval`: every paid call counts and is kept, figures say only what is known,
and files the eval cannot use are refused before any call."""

import json
import os
import signal

import pytest
from conftest import (
    evaluate,
    interrupt,
    results,
    run_llm,
    run_process,
    set_prices,
    spawn,
    wait_for_started,
)
from fake_models import read_calls

DOLLAR = (0, 1_000_000)  # a dollar per output token: a fake answer ('fake-x answers: qN') costs $3


def write_rows(path, count=3):
    "Rows every fake model answers right (--grade contains): the answer is the prompt."
    path.write_text(
        "".join(json.dumps({"prompt": f"q{i}", "answer": f"q{i}"}) + "\n" for i in range(count))
    )
    return path


def save_preset(name, aggregator_options, proposers="fake-a,fake-b"):
    aggregator = json.dumps({"model": "fake-c", "options": aggregator_options})
    result = run_llm(
        "moa", "save", name, "-o", "proposers", proposers, "-o", "aggregator", aggregator
    )
    assert result.exit_code == 0, result.output


# --- money -------------------------------------------------------------------------


def test_the_cap_counts_the_proposals_of_a_failed_moa_answer(tmp_path):
    save_preset("broken", {"fail": "aggregator down"})
    set_prices(fake_a=DOLLAR, fake_b=DOLLAR, fake_c=DOLLAR)
    source = write_rows(tmp_path / "q.jsonl")
    args = [str(source), "-m", "moa-broken", "--grade", "contains", "--concurrency", "1"]
    result = evaluate(*args, "--max-cost", "0.5")
    assert result.exit_code == 0, result.output
    proposals = [c for c in read_calls() if c["model"] in ("fake-a", "fake-b")]
    assert len(proposals) == 2  # one answer's proposers, then the cap: no second answer
    assert result.stderr.startswith(
        "Stopped at the --max-cost cap of $0.50: this run's calls cost $6.00; 0 of 3 answers"
    )
    (failed,) = results(tmp_path / "q.eval.jsonl")
    assert "aggregator down" in failed["error"]
    assert sorted(call["model"] for call in failed["billed"]) == ["fake-a", "fake-b"]
    entry = {
        c["model"]: c for c in json.loads(evaluate(*args, "--json", "-n", "1").stdout)["candidates"]
    }
    assert entry["moa-broken"]["usd"] == pytest.approx(6.0)  # the report counts them too


def test_a_capped_eval_interleaves_models_and_reports_what_it_never_asked(tmp_path):
    set_prices(fake_a=DOLLAR, fake_b=DOLLAR)
    source = write_rows(tmp_path / "q.jsonl")
    args = [str(source), "-m", "fake-a", "-m", "fake-b", "--grade", "contains"]
    capped = [*args, "--concurrency", "1", "--max-cost", "5"]
    summary = json.loads(evaluate(*capped, "--json").stdout)
    by_model = {c["model"]: c for c in summary["candidates"]}
    for model in ("fake-a", "fake-b"):  # $3 + $3 reached the cap: each model answered q0
        entry = by_model[model]
        assert (entry["answered"], entry["failures"], entry["not_asked"]) == (1, 0, 2)
        assert (entry["correct"], entry["quality"]) == (1, 1.0)  # over what was asked
    assert [c["prompt"] for c in read_calls()] == ["q0", "q0"]
    from llm_moa.eval.report import to_csv, to_table

    table = to_table(summary)
    assert (
        "Not asked yet (the eval stopped before them): fake-a 2 of 3; fake-b 2 of 3 prompts."
        in table
    )
    assert table.count("acc 1.00 (0.21-1.00)") == 2 and "acc 0.00" not in table
    as_csv = to_csv(summary).splitlines()
    header = as_csv[0].split(",")
    assert dict(zip(header, as_csv[1].split(",")))["not_asked"] == "2"


def test_a_prompt_never_judged_is_left_out_not_a_tie(tmp_path):
    from llm_moa.eval.inputs import Row
    from llm_moa.eval.report import report, to_table
    from llm_moa.eval.run import prepare

    source = tmp_path / "p.jsonl"
    source.write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    models = ["fake-good", "fake-a"]
    evaluate(
        str(source),
        "-m",
        models[0],
        "-m",
        models[1],
        "--baseline",
        "fake-a",
        "--judge",
        "fake-judge-marker",
    )
    path, two = tmp_path / "p.eval.jsonl", Row(2, "two").key
    kept = [r for r in results(path) if r["type"] == "answer" or r["key"] != two]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))  # stopped before judging "two"
    ev = prepare(
        str(source), models, "fake-judge-marker", "fake-a", None, None, 1, None, None, print
    )
    summary = report(ev)
    good = summary["candidates"][0]
    assert (good["wins"], good["ties"], good["losses"], good["not_asked"]) == (1, 0, 0, 1)
    assert good["quality"] == 1.0
    assert (
        "Not asked or judged yet (the eval stopped before them): fake-good 1 of 2 prompts."
        in to_table(summary)
    )


def test_unknown_dollars_stay_unknown_in_every_format(tmp_path):
    set_prices(fake_a=DOLLAR)
    source = write_rows(tmp_path / "q.jsonl", count=2)
    args = [str(source), "-m", "fake-a", "-m", "fake-b", "--grade", "contains"]
    row = next(line for line in evaluate(*args).stdout.splitlines() if line.startswith("fake-b "))
    assert row.split()[9:11] == ["?", "?"]  # $/prompt, $/correct
    fake_b = {c["model"]: c for c in json.loads(evaluate(*args, "--json").stdout)["candidates"]}[
        "fake-b"
    ]
    assert (fake_b["usd"], fake_b["usd_per_prompt"], fake_b["usd_per_correct"]) == (
        None,
        None,
        None,
    )
    lines = evaluate(*args, "--csv").stdout.splitlines()
    as_csv = {
        line.split(",")[0]: dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]
    }
    assert as_csv["fake-b"]["usd_per_prompt"] == as_csv["fake-b"]["usd_per_correct"] == ""
    assert float(as_csv["fake-a"]["usd_per_prompt"]) == pytest.approx(3.0)


# --- records that cannot be true -------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [{"duration_ms": -100_000_000}, {"calls": -7}, {"input_tokens": -1}, {"output_tokens": 2.5}],
    ids=["duration", "calls", "input", "output"],
)
def test_a_results_line_that_cannot_be_true_is_unreadable(tmp_path, change):
    source = write_rows(tmp_path / "q.jsonl", count=1)
    args = [str(source), "-m", "fake-a", "--grade", "contains"]
    assert evaluate(*args).exit_code == 0
    path = tmp_path / "q.eval.jsonl"
    path.write_text(json.dumps({**results(path)[0], **change}) + "\n")
    result = evaluate(*args, "--json")
    assert result.stderr == f"Skipped 1 unreadable line in {path}\n"
    assert len(read_calls()) == 2  # not taken as done: made again
    entry = json.loads(result.stdout)["candidates"][0]
    assert entry["mean_latency_s"] >= 0 and entry["mean_calls"] == 1


def test_an_answer_of_any_text_is_kept(tmp_path, user_path):
    (user_path / "model_options.json").write_text('{"fake-a": {"text": "odd \\ud800 text"}}')
    source = write_rows(tmp_path / "q.jsonl", count=1)
    args = [str(source), "-m", "fake-a", "--grade", "contains"]
    for _ in range(2):
        result = evaluate(*args, "--json")
        assert result.stderr == "" and json.loads(result.stdout)["candidates"][0]["answered"] == 1
    assert len(read_calls()) == 1  # read back, not made again


# --- files the eval cannot use: refused before any call ----------------------------


def test_a_lock_that_cannot_be_taken_is_one_line_before_any_call(tmp_path):
    source = write_rows(tmp_path / "q.jsonl", count=1)
    (tmp_path / "q.eval.jsonl.lock").mkdir()
    result = evaluate(str(source), "-m", "fake-a", "--grade", "contains")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tmp_path / 'q.eval.jsonl.lock'}: cannot be used as the results file's lock (not a file)\n"
    )
    assert read_calls() == []


def test_a_results_file_that_cannot_be_written_is_one_line_before_any_call(tmp_path):
    "A place no file can be made (the tests run as root, so /proc stands in for read-only)."
    source = write_rows(tmp_path / "q.jsonl", count=1)
    result = evaluate(
        str(source), "-m", "fake-a", "--grade", "contains", "--out", "/proc/moa.jsonl"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: /proc/moa.jsonl: cannot be written (")
    assert read_calls() == []


@pytest.mark.parametrize("same", ["itself", "symlink", "hard link"])
def test_the_results_file_cannot_be_the_prompts_file(tmp_path, same):
    source = write_rows(tmp_path / "q.jsonl", count=1)
    before = source.read_bytes()
    out = source if same == "itself" else tmp_path / "other.jsonl"
    if same == "symlink":
        out.symlink_to(source)
    elif same == "hard link":
        os.link(source, out)
    result = evaluate(str(source), "-m", "fake-a", "--grade", "contains", "--out", str(out))
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"Error: --out {out}: that is the prompts file; give the results another file\n"
    )
    assert source.read_bytes() == before and read_calls() == []


@pytest.mark.parametrize(  # a folder as --out is click's to refuse
    "which, kind", [("prompts", "fifo"), ("results", "fifo"), ("prompts", "folder")]
)
def test_a_fifo_or_a_folder_is_one_line_not_a_hang(tmp_path, user_path, which, kind):
    source = write_rows(tmp_path / "q.jsonl", count=1)
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo) if kind == "fifo" else fifo.mkdir()
    args = [str(fifo)] if which == "prompts" else [str(source), "--out", str(fifo)]
    result = run_process(
        user_path, "moa", "eval", *args, "-m", "fake-a", "--grade", "contains", timeout=30
    )
    assert result.returncode == 1
    assert result.stderr == f"Error: {fifo}: cannot be read, not a regular file\n"
    assert read_calls() == []


# --- an interrupted eval keeps what it paid for -------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_eval_keeps_every_paid_answer_and_proposal(tmp_path, user_path, sig):
    save_preset("slow", {"hang": True})
    source = write_rows(tmp_path / "q.jsonl", count=1)
    args = ["moa", "eval", str(source), "-m", "moa-slow", "-m", "fake-plain", "--grade", "contains"]
    process = spawn(user_path, *args)
    wait_for_started(user_path, 4)  # two proposers, the aggregator, and fake-plain
    path = tmp_path / "q.eval.jsonl"
    import time

    deadline = time.monotonic() + 15
    while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    elapsed, stdout, stderr = interrupt(process, sig)
    assert elapsed < 2.0 and process.returncode != 0 and "Traceback" not in stderr
    assert "The 2 answered proposals are saved; show them with: llm moa unfinished" in stderr
    (saved,) = (user_path / "moa" / "unfinished").glob("*.json")
    entry = json.loads(saved.read_text())
    assert (entry["model"], entry["prompt"], entry["error"]) == ("moa-slow", "q0", "interrupted")
    assert [r["model"] for r in results(path)] == ["fake-plain"]  # the finished answer is kept
    listed = run_llm("moa", "unfinished").stdout
    assert saved.stem in listed and "moa-slow" in listed
    calls = len(read_calls())
    again = evaluate(str(source), "-m", "fake-plain", "--grade", "contains", "--json")
    assert json.loads(again.stdout)["candidates"][0]["answered"] == 1
    assert len(read_calls()) == calls  # not paid again


def test_moa_answers_draw_no_progress_block_of_their_own(tmp_path, user_path):
    from conftest import run_with_terminal_stderr

    for key, value in (("progress", "true"), ("proposer_options", '{"delay": 0.5}')):
        assert run_llm("models", "options", "set", "moa-default", key, value).exit_code == 0
    source = write_rows(tmp_path / "q.jsonl", count=1)
    args = ["moa", "eval", str(source), "-m", "moa-default", "--grade", "contains"]
    stdout, stderr = run_with_terminal_stderr(user_path, *args)
    assert "answers  [" in stderr and "]  1/1" in stderr  # the eval's own bar
    assert "layer 1" not in stderr and "running" not in stderr  # and nothing else
    assert stdout.startswith("model ")
