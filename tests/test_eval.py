"""`llm moa eval`: arithmetic of scores, position-swap, resume, outputs and bad input."""

import json

import pytest
from conftest import evaluate, interrupt, run_llm, spawn, wait_for_started
from fake_models import quiz_is_right, read_calls

from llm_moa.eval.judge import parse_verdict
from llm_moa.eval.report import wilson


def write_quiz(path, count=20):
    rows = [{"prompt": f"What is {i}+{i * 3}?", "answer": str(i * 4)} for i in range(count)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return rows


def report(*args, input=None):
    result = evaluate(*args, "--json", input=input)
    assert result.exit_code == 0, result.output
    return {c["model"]: c for c in json.loads(result.output)["candidates"]}, json.loads(
        result.output
    )


def test_graded_accuracy_matches_the_known_quality(tmp_path):
    rows = write_quiz(tmp_path / "quiz.jsonl")
    by_model, summary = report(
        str(tmp_path / "quiz.jsonl"),
        "-m",
        "fake-quiz-60",
        "-m",
        "fake-quiz-90",
        "--grade",
        "contains",
    )
    assert summary["mode"] == "graded"
    for model, percent in (("fake-quiz-60", 60), ("fake-quiz-90", 90)):
        expected = sum(quiz_is_right(model, r["prompt"], percent) for r in rows)
        entry = by_model[model]
        assert entry["correct"] == expected
        assert entry["quality"] == expected / 20
        assert (entry["ci_low"], entry["ci_high"]) == pytest.approx(wilson(expected, 20))
        assert entry["ci_low"] < entry["quality"] < entry["ci_high"] or entry["quality"] in (0, 1)
        assert entry["mean_calls"] == 1 and entry["failures"] == 0


def test_wilson_interval():
    low, high = wilson(12, 20)
    assert (round(low, 4), round(high, 4)) == (0.3866, 0.7812)
    assert wilson(0, 10)[0] == 0 and wilson(10, 10)[1] == 1


@pytest.mark.parametrize(
    "kind, answer, response, right",
    [
        ("exact", "Paris", "  paris. ", True),
        ("exact", "Paris", "It is Paris", False),
        ("contains", "Paris", "It is Paris.", True),
        ("regex", r"\b4\b", "The answer is 4", True),
        ("regex", r"\b4\b", "The answer is 42", False),
        ("regex", "(", "anything", False),  # a bad pattern is a wrong answer, not a crash
    ],
)
def test_grading(kind, answer, response, right):
    from llm_moa.eval.report import grade

    assert grade(kind, response, answer) is right


def test_position_bias_is_cancelled(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "one"}\n{"prompt": "two"}\n{"prompt": "three"}\n')
    by_model, summary = report(
        str(tmp_path / "p.jsonl"), "-m", "fake-b", "-m", "fake-a", "--judge", "fake-judge-first"
    )
    # a judge that always says "A" gives each side one verdict per prompt: all ties
    assert summary["baseline"] == "fake-b"
    entry = by_model["fake-a"]
    assert (entry["wins"], entry["ties"], entry["losses"]) == (0, 3, 0)
    assert entry["quality"] == 0.5
    lines = [json.loads(line) for line in (tmp_path / "p.eval.jsonl").read_text().splitlines()]
    orders = sorted(r["order"] for r in lines if r["type"] == "judgement")
    assert orders == ["baseline-first"] * 3 + ["candidate-first"] * 3


def test_consistent_judge_gives_wins_and_losses(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    assert (
        run_llm(
            "moa", "save", "good", "-o", "proposers", "fake-a", "-o", "aggregator", "fake-good"
        ).exit_code
        == 0
    )
    by_model, summary = report(
        str(tmp_path / "p.jsonl"), "-m", "moa-good", "-m", "fake-a", "--judge", "fake-judge-marker"
    )
    assert summary["baseline"] == "fake-a"  # the first model that is not a MoA model
    good = by_model["moa-good"]
    assert (good["wins"], good["ties"], good["losses"], good["quality"]) == (2, 0, 0, 1.0)
    assert good["mean_calls"] == 2  # one proposer and the aggregator, per prompt
    by_model, _ = report(
        str(tmp_path / "p.jsonl"),
        "-m",
        "fake-a",
        "--baseline",
        "fake-good",
        "--judge",
        "fake-judge-marker",
        "--out",
        str(tmp_path / "other.jsonl"),
    )
    assert (by_model["fake-a"]["losses"], by_model["fake-a"]["quality"]) == (2, 0.0)


def test_unreadable_verdicts_are_ties_and_counted(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "one"}\n')
    by_model, _ = report(
        str(tmp_path / "p.jsonl"), "-m", "fake-a", "-m", "fake-b", "--judge", "fake-judge-garbled"
    )
    assert by_model["fake-b"]["ties"] == 1 and by_model["fake-b"]["unreadable_verdicts"] == 2


@pytest.mark.parametrize(
    "text, verdict",
    [
        ("blah\nVERDICT: A", "A"),
        ("VERDICT: b", "B"),
        ("**Verdict:** TIE", "tie"),
        ("Verdict - [[B]]", "B"),
        ("[[A]]", "A"),
        ("B", "B"),
        ("I think verdict: A ... wait, VERDICT: B", "B"),
        ("no idea", None),
    ],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_resume_never_pays_twice(tmp_path):
    write_quiz(tmp_path / "q.jsonl", count=4)
    args = [str(tmp_path / "q.jsonl"), "-m", "fake-a", "-m", "fake-b", "--grade", "contains"]
    assert evaluate(*args).exit_code == 0
    assert len(read_calls()) == 8
    assert evaluate(*args).exit_code == 0
    assert len(read_calls()) == 8  # everything was already answered
    results = tmp_path / "q.eval.jsonl"
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:5]) + "\n" + lines[5][:15])  # interrupted mid-write
    assert evaluate(*args).exit_code == 0
    assert len(read_calls()) == 8 + 3  # only the three lost answers again


def test_failures_are_counted_and_lose(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    by_model, _ = report(
        str(tmp_path / "p.jsonl"),
        "-m",
        "fake-key",
        "-m",
        "fake-a",
        "--baseline",
        "fake-a",
        "--judge",
        "fake-judge-first",
    )
    assert by_model["fake-key"]["failures"] == 2 and by_model["fake-key"]["answered"] == 0
    assert by_model["fake-key"]["losses"] == 2


def test_table_chart_and_csv(tmp_path):
    write_quiz(tmp_path / "q.jsonl", count=5)
    result = evaluate(
        str(tmp_path / "q.jsonl"), "-m", "moa-default", "-m", "fake-quiz-90", "--grade", "contains"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["model", "quality", "(95%"]
    assert lines[1].startswith("moa-default") and lines[2].startswith("fake-quiz-90")
    assert "quality against cost (mean tokens per prompt)" in result.stdout
    assert "A moa-default" in result.stdout and "B fake-quiz-90" in result.stdout
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    as_csv = evaluate(
        str(tmp_path / "q.jsonl"),
        "-m",
        "moa-default",
        "-m",
        "fake-quiz-90",
        "--grade",
        "contains",
        "--csv",
    ).output.splitlines()
    assert as_csv[0].startswith("model,role,metric,quality")
    assert as_csv[1].startswith("moa-default,candidate,accuracy,")


def test_stdin_and_csv_input(tmp_path):
    result = evaluate(
        "-",
        "-m",
        "fake-a",
        "--grade",
        "contains",
        "--out",
        str(tmp_path / "r.jsonl"),
        input='{"prompt": "say hi", "answer": "say hi"}\n',
    )
    assert result.exit_code == 0, result.output
    (tmp_path / "p.csv").write_text('prompt,answer\n"What is 1+1?",2\n')
    by_model, _ = report(str(tmp_path / "p.csv"), "-m", "fake-quiz-90", "--grade", "contains")
    assert by_model["fake-quiz-90"]["prompts"] == 1


def test_limit(tmp_path):
    write_quiz(tmp_path / "q.jsonl", count=10)
    by_model, summary = report(
        str(tmp_path / "q.jsonl"), "-m", "fake-a", "--grade", "exact", "-n", "3"
    )
    assert summary["prompts"] == 3 and len(read_calls()) == 3


@pytest.mark.parametrize(
    "content, args, message",
    [
        (None, ["-m", "fake-a", "--grade", "exact"], "No such file: "),
        ("", ["-m", "fake-a", "--grade", "exact"], "p.jsonl has no prompts"),
        (
            '{"prompt": "a"}\n{oops\n',
            ["-m", "fake-a", "--judge", "fake-b"],
            "p.jsonl line 2: invalid JSON",
        ),
        (
            '{"prompt": "a"}\n{"question": "b"}\n',
            ["-m", "fake-a", "--judge", "fake-b"],
            "p.jsonl line 2: missing or empty 'prompt'",
        ),
        (
            '{"prompt": "a"}\n[1]\n',
            ["-m", "fake-a", "--judge", "fake-b"],
            "p.jsonl line 2: expected an object",
        ),
        (
            '{"prompt": "a", "answer": "x"}\n{"prompt": "b"}\n',
            ["-m", "fake-a", "--grade", "exact"],
            "--grade needs an 'answer' in every row; line 2 has none",
        ),
        (
            '{"prompt": "a"}\n',
            ["-m", "fake-a"],
            "Choose one of --judge MODEL (pairwise) or --grade",
        ),
        (
            '{"prompt": "a"}\n',
            ["-m", "fake-a", "--judge", "fake-b", "--grade", "exact"],
            "Choose one of",
        ),
        (
            '{"prompt": "a"}\n',
            ["-m", "fake-a", "--baseline", "fake-b", "--grade", "exact"],
            "--baseline goes with --judge",
        ),
        (
            '{"prompt": "a"}\n',
            ["-m", "nope", "--judge", "fake-b", "--baseline", "fake-a"],
            "Unknown model 'nope'",
        ),
        (
            '{"prompt": "a"}\n',
            ["-m", "nope", "-m", "fake-a", "--judge", "fake-b"],
            "Unknown model 'nope'",
        ),
        (
            '{"prompt": "a"}\n',
            ["-m", "fake-a", "--judge", "nope-judge"],
            "Unknown model 'nope-judge'",
        ),
        (
            '{"prompt": "a"}\n',
            ["-m", "fake-a", "--judge", "fake-b"],
            "--judge compares candidates with a baseline",
        ),
    ],
)
def test_bad_input(tmp_path, content, args, message):
    path = tmp_path / "p.jsonl"
    if content is not None:
        path.write_text(content)
    result = evaluate(str(path), *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1
    assert read_calls() == []


def test_csv_without_a_prompt_column(tmp_path):
    (tmp_path / "p.csv").write_text("question,answer\nx,y\n")
    result = evaluate(str(tmp_path / "p.csv"), "-m", "fake-a", "--grade", "exact")
    assert result.stderr == "Error: p.csv: CSV needs a 'prompt' column (found: question, answer)\n"


def test_progress_bar_on_a_terminal(tmp_path, user_path):
    from conftest import run_with_terminal_stderr

    write_quiz(tmp_path / "q.jsonl", count=3)
    stdout, stderr = run_with_terminal_stderr(
        user_path,
        "moa",
        "eval",
        str(tmp_path / "q.jsonl"),
        "-m",
        "fake-quiz-60",
        "--grade",
        "contains",
    )
    assert "answers  [" in stderr and "]  3/3" in stderr
    assert stdout.startswith("model ")


# --- the results file keeps what was paid for, and only that ------------------


def test_an_answer_appended_after_a_torn_line_is_kept(tmp_path):
    write_quiz(tmp_path / "q.jsonl", count=4)
    args = [str(tmp_path / "q.jsonl"), "-m", "fake-a", "-m", "fake-b", "--grade", "contains"]
    assert evaluate(*args).exit_code == 0
    results = tmp_path / "q.eval.jsonl"
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:5]) + "\n" + lines[5][:15])  # a crash mid-write: no newline
    assert evaluate(*args).exit_code == 0
    assert len(read_calls()) == 8 + 3
    result = evaluate(*args)
    assert result.exit_code == 0
    assert len(read_calls()) == 8 + 3  # the answers made after the torn line were kept
    assert result.stderr == f"Skipped 1 unreadable line in {results}\n"
    assert results.read_text().splitlines()[5] == lines[5][:15]  # the torn line stays alone


def test_unreadable_results_lines_are_skipped_and_counted(tmp_path):
    from llm_moa.eval.inputs import Row

    (tmp_path / "p.jsonl").write_text('{"prompt": "one"}\n')
    key = Row(1, "one").key
    bad = [
        b'{"type": "answer", "model": 5}',
        b'{"type": "answer", "model": "fake-a", "key": "'
        + key.encode()
        + b'", "text": 5, "duration_ms": "x"}',
        b'{"type": "judgement", "candidate": "fake-a", "baseline": "fake-b", "judge": "fake-judge-first", "key": "'
        + key.encode()
        + b'", "order": "candidate-first", "winner": ["x"]}',
        b"[1, 2]",
        b'{"type": ["answer"]}',
        b'{"type": "answer", "model": "fake-a", "key": "'
        + key.encode()
        + b'", "text": "x", "duration_ms": 1'
        + b"0" * 400
        + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe\x00 binary \x80 garbage",
    ]
    results = tmp_path / "p.eval.jsonl"
    results.write_bytes(b"\n".join(bad) + b"\n")
    result = evaluate(
        str(tmp_path / "p.jsonl"), "-m", "fake-a", "-m", "fake-b", "--judge", "fake-judge-first"
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == f"Skipped 8 unreadable lines in {results}\n"
    assert (
        len([c for c in read_calls() if c["model"] == "fake-a"]) == 1
    )  # the bad answer was not taken as done


def test_an_answer_recorded_before_costs_were_kept_costs_a_call_of_unknown_usage(tmp_path):
    write_quiz(tmp_path / "q.jsonl", count=2)
    assert run_llm("moa", "prices", "set", "fake-a", "1000", "2000").exit_code == 0
    args = [str(tmp_path / "q.jsonl"), "-m", "fake-a", "--grade", "contains"]
    assert evaluate(*args).exit_code == 0
    results = tmp_path / "q.eval.jsonl"
    old, new = [json.loads(line) for line in results.read_text().splitlines()]
    del old["billed"]  # as an eval wrote it before costs were kept
    results.write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    entry = report(*args)[0]["fake-a"]
    assert (entry["usd_complete"], entry["usd_missing"]) == (False, ["fake-a usage unknown"])
    usage = new["billed"][0]["usage"]
    assert entry["usd"] == pytest.approx(
        (usage["input"] * 1000 + usage["output"] * 2000) / 1e6
    )  # a lower bound
    assert len(read_calls()) == 2  # and the answer is not made again


def test_an_append_waits_for_the_lock_of_the_results_file(tmp_path, user_path):
    "Two evals may share a results file: each append holds its lock, so lines never interleave."
    import time

    from llm_moa.files.storage import locked

    (tmp_path / "p.jsonl").write_text('{"prompt": "one", "answer": "one"}\n')
    results = tmp_path / "p.eval.jsonl"
    with locked(results):
        process = spawn(
            user_path,
            "moa",
            "eval",
            str(tmp_path / "p.jsonl"),
            "-m",
            "fake-a",
            "--grade",
            "contains",
        )
        deadline = time.monotonic() + 120
        while not read_calls() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert read_calls(), "the answer was never made"
        time.sleep(1)  # time enough for an append that does not take the lock
        assert not results.exists() or results.read_bytes() == b""
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert [json.loads(line)["model"] for line in results.read_text().splitlines()] == ["fake-a"]


def test_failures_are_made_again_and_the_report_says_why(tmp_path, monkeypatch):
    (tmp_path / "p.jsonl").write_text(
        '{"prompt": "one", "answer": "one"}\n{"prompt": "two", "answer": "two"}\n'
    )
    args = [str(tmp_path / "p.jsonl"), "-m", "fake-key", "-m", "fake-a", "--grade", "contains"]
    by_model, _ = report(*args)
    reason = by_model["fake-key"]["failure_reason"]
    assert by_model["fake-key"]["failures"] == 2 and "key" in reason.lower()
    assert by_model["fake-a"]["failure_reason"] is None
    table = evaluate(*args).stdout.splitlines()
    assert table[0].endswith("failures  most common failure")
    assert table[1].startswith("fake-key") and table[1].endswith(f"2         {reason}")
    as_csv = evaluate(*args, "--csv").stdout.splitlines()
    assert (
        as_csv[0].endswith(",failure_reason")
        and as_csv[1].startswith("fake-key,")
        and reason in as_csv[1]
    )
    assert [c for c in read_calls() if c["model"] == "fake-key"] == []
    monkeypatch.setenv("FAKE_API_KEY", "sk-fixed")  # the user fixes the key and runs again
    by_model, _ = report(*args)
    assert (
        len([c for c in read_calls() if c["model"] == "fake-key"]) == 2
    )  # failures were not taken as done
    assert (by_model["fake-key"]["answered"], by_model["fake-key"]["failures"]) == (2, 0)
    assert len([c for c in read_calls() if c["model"] == "fake-a"]) == 2  # successes were
    assert "most common failure" not in evaluate(*args).stdout


def test_error_messages_from_models_cannot_drive_the_terminal(tmp_path):
    hostile = "boom \x1b]52;c;ZXZpbA==\x07 \x1b[2J"
    options = json.dumps([{"model": "fake-a", "options": {"fail": hostile}}])
    assert (
        run_llm(
            "moa", "save", "bad", "-o", "proposers", options, "-o", "aggregator", "fake-b"
        ).exit_code
        == 0
    )
    (tmp_path / "p.jsonl").write_text('{"prompt": "one", "answer": "one"}\n')
    args = [str(tmp_path / "p.jsonl"), "-m", "moa-bad", "--grade", "contains"]
    for output in (
        evaluate(*args).stdout,
        evaluate(*args, "--csv").stdout,
        evaluate(*args, "--json").stdout,
    ):
        assert "\x1b" not in output and "\x07" not in output
    assert "\\x1b]52" in report(*args)[0]["moa-bad"]["failure_reason"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"prompt": "a"}\n'.encode("utf-16"), "p.jsonl line 1: not UTF-8 text"),
        (
            '{"prompt": "a"}\n{"prompt": "café"}\n'.encode("latin-1"),
            "p.jsonl line 2: not UTF-8 text",
        ),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "p.jsonl line 1: JSON nested too deeply"),
        (
            b'{"prompt": "a"}\n{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
            "p.jsonl line 2: JSON nested too deeply",
        ),
        (
            b'{"prompt": "a", "system": {"x": [[["deep"]]]}}\n',
            "p.jsonl line 1: 'system' must be text",
        ),
    ],
    ids=["utf-16", "latin-1", "deep-array", "deep-prompt", "nested-system"],
)
def test_input_that_cannot_be_read_is_one_line(tmp_path, content, message):
    (tmp_path / "p.jsonl").write_bytes(content)
    result = evaluate(str(tmp_path / "p.jsonl"), "-m", "fake-a", "--judge", "fake-b")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}"), result.stderr[:300]
    assert result.stderr.count("\n") == 1 and len(result.stderr) < 300
    assert read_calls() == []


def test_a_long_csv_field_a_bom_on_stdin_and_a_line_separator_are_read(tmp_path):
    long_prompt = "x" * 200_000  # over the csv module's default field limit (131072)
    (tmp_path / "p.csv").write_text(f'prompt,answer\n"{long_prompt}",x\n')
    by_model, _ = report(str(tmp_path / "p.csv"), "-m", "fake-a", "--grade", "contains")
    assert by_model["fake-a"]["answered"] == 1 and read_calls()[0]["prompt"] == long_prompt
    stdin = (
        '\ufeff{"prompt": "say hi", "answer": "say hi"}\r\n{"prompt": "a\u2028b", "answer": "b"}\n'
    )
    by_model, _ = report(
        "-", "-m", "fake-a", "--grade", "contains", "--out", str(tmp_path / "r.jsonl"), input=stdin
    )
    assert by_model["fake-a"]["correct"] == 2


def test_a_csv_header_is_shown_cut_and_safe(tmp_path):
    (tmp_path / "p.csv").write_text("question\x1b[2J," + "y" * 500 + "\nx,y\n")
    result = evaluate(str(tmp_path / "p.csv"), "-m", "fake-a", "--grade", "exact")
    assert result.stderr.startswith(
        "Error: p.csv: CSV needs a 'prompt' column (found: question\\x1b[2J, yyy"
    )
    assert result.stderr.endswith("...)\n") and len(result.stderr) < 200


# --- every model runs as `llm -m MODEL` would ----------------------------------


def test_saved_options_of_a_moa_model_are_used(tmp_path):
    assert (
        run_llm("models", "options", "set", "moa-default", "proposers", "fake-b,fake-c").exit_code
        == 0
    )
    (tmp_path / "p.jsonl").write_text('{"prompt": "one", "answer": "one"}\n')
    by_model, _ = report(str(tmp_path / "p.jsonl"), "-m", "moa-default", "--grade", "contains")
    assert by_model["moa-default"]["answered"] == 1
    answered_by = sorted(c["model"] for c in read_calls() if c["prompt"] == "one")
    # the saved proposers, then the default model (fake-a) aggregating; not three samples of fake-a
    assert answered_by == ["fake-a", "fake-b", "fake-c"]


def test_saved_options_of_plain_models_and_the_judge_are_used(tmp_path):
    assert run_llm("models", "options", "set", "fake-a", "temperature", "0.5").exit_code == 0
    assert run_llm("models", "options", "set", "fake-b", "temperature", "0.2").exit_code == 0
    (tmp_path / "p.jsonl").write_text('{"prompt": "one"}\n')
    report(str(tmp_path / "p.jsonl"), "-m", "fake-a", "-m", "fake-c", "--judge", "fake-b")
    options = {c["model"]: c["options"] for c in read_calls()}
    assert options == {"fake-a": {"temperature": 0.5}, "fake-c": {}, "fake-b": {"temperature": 0.2}}


def test_a_bad_saved_option_stops_the_eval_before_any_call(tmp_path, user_path):
    (user_path / "model_options.json").write_text(
        json.dumps({"fake-c": {"temperature": "hot\x1b[2J"}})
    )
    (tmp_path / "p.jsonl").write_text('{"prompt": "one"}\n')
    result = evaluate(
        str(tmp_path / "p.jsonl"), "-m", "fake-a", "-m", "fake-c", "--judge", "fake-b"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: saved options of fake-c: option temperature="), (
        result.stderr
    )
    assert result.stderr.count("\n") == 1 and "\x1b" not in result.stderr
    assert read_calls() == []


def test_answers_made_with_other_saved_options_are_not_reused(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "one"}\n')
    args = [
        str(tmp_path / "p.jsonl"),
        "-m",
        "fake-a",
        "-m",
        "fake-c",
        "--judge",
        "fake-judge-first",
    ]
    report(*args)
    assert sorted(c["model"] for c in read_calls()) == ["fake-a", "fake-c"]  # answered in parallel
    assert run_llm("models", "options", "set", "fake-a", "temperature", "0.5").exit_code == 0
    report(*args)
    # fake-a answers again with its new options; fake-c's answer is kept; both judgements concern fake-a's answer
    assert [(c["model"], c["options"]) for c in read_calls()[2:]] == [
        ("fake-a", {"temperature": 0.5})
    ]
    lines = [json.loads(line) for line in (tmp_path / "p.eval.jsonl").read_text().splitlines()]
    assert len([r for r in lines if r["type"] == "judgement"]) == 4
    report(*args)
    assert len(read_calls()) == 3  # and that answer is kept in turn


def test_ctrl_c_stops_an_eval_without_waiting_for_its_calls(tmp_path, user_path):
    assert (
        run_llm("models", "options", "set", "fake-c", "hang", "true").exit_code == 0
    )  # a minute, then fails
    (tmp_path / "p.jsonl").write_text('{"prompt": "one", "answer": "one"}\n')
    process = spawn(
        user_path, "moa", "eval", str(tmp_path / "p.jsonl"), "-m", "fake-c", "--grade", "contains"
    )
    wait_for_started(user_path, 1, limit=120)
    # the hanging call would hold a non-daemon thread for 60 s
    elapsed, stdout, stderr = interrupt(process, timeout=50)
    assert elapsed < 10 and process.returncode != 0
    assert (stdout, stderr.strip()) == ("", "Aborted!")  # click's word, and no traceback
