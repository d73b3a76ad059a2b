"""Files the plugin reads, whatever they hold, give one line naming the file and
what is wrong; other commands and other models keep working. And llm processes
changing presets at the same time keep each other's changes."""

import json
import os
import sqlite3

import pytest
from conftest import WRAPPER, moa, run_llm, run_process, spawn, turns

SLOW_READS = """
import runpy, sys, time
import llm_moa.files.storage as storage
read_text = storage.read_text
def slow_read_text(path, *args, **kwargs):
    text = read_text(path, *args, **kwargs)
    if path.name == "presets.json":
        time.sleep(0.2)  # widen the gap between reading the presets and writing them back
    return text
storage.read_text = slow_read_text
sys.argv = [{wrapper!r}, *sys.argv[1:]]
runpy.run_path({wrapper!r}, run_name="__main__")
"""


def slow_spawn(user_path, *args):
    "A real llm process (the CLI with the fakes) whose reads of presets.json are slow."
    return spawn(user_path, *args, code=SLOW_READS.format(wrapper=str(WRAPPER)))


def finish(processes):
    "Wait for every process; return their stdout lines, asserting each succeeded."
    outputs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        outputs.append(stdout)
    return outputs


def preset_names(user_path):
    return sorted(json.loads((user_path / "moa" / "presets.json").read_text()))


# --- parallel writers -------------------------------------------------------


def test_parallel_saves_keep_every_preset(user_path):
    names = [f"p{n}" for n in range(10)]
    outputs = finish(
        [slow_spawn(user_path, "moa", "save", name, "-o", "proposers", "fake-a") for name in names]
    )
    assert all(out.startswith(f"Saved preset '{name}'") for name, out in zip(names, outputs))
    assert preset_names(user_path) == sorted(names)


def test_parallel_saves_and_removes_keep_each_others_changes(user_path):
    for n in range(5):
        assert run_llm("moa", "save", f"old{n}", "-o", "proposers", "fake-a").exit_code == 0
    assert run_llm("moa", "save", "kept", "-o", "proposers", "fake-b").exit_code == 0
    processes = []
    for n in range(5):
        processes.append(slow_spawn(user_path, "moa", "remove", f"old{n}"))
        processes.append(
            slow_spawn(user_path, "moa", "save", f"new{n}", "-o", "proposers", "fake-c")
        )
    finish(processes)
    assert preset_names(user_path) == ["kept", "new0", "new1", "new2", "new3", "new4"]


# --- presets.json -----------------------------------------------------------


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"[" * 100000, "JSON nested too deeply"),
        (b'{"a": ' * 100000, "JSON nested too deeply"),
        (b'["a preset"]', "expected a JSON object"),
        (b'{"caf\xe9": {}}', "not UTF-8 text"),
        (b"{not json", "not valid JSON ("),
    ],
)
def test_unreadable_presets_file_breaks_nothing_else(user_path, content, problem):
    path = user_path / "moa" / "presets.json"
    path.parent.mkdir()
    path.write_bytes(content)
    assert run_llm("-m", "fake-a", "hi").stdout == "fake-a answers: hi\n"
    models = run_llm("models")
    assert models.exit_code == 0 and "MoA: moa-default" in models.output
    assert (
        run_llm("-m", "moa-default", "-o", "proposers", "fake-b", "q").stdout
        == "fake-a answers: q\n"
    )
    for command in (
        ["moa", "list"],
        ["moa", "save", "p", "-o", "proposers", "fake-a"],
        ["moa", "remove", "p"],
    ):
        result = run_llm(*command)
        assert result.exit_code == 1
        assert (
            result.stderr.startswith(f"Error: {path}: {problem}") and result.stderr.count("\n") == 1
        )
    assert path.read_bytes() == content  # refused, not overwritten


def test_entries_that_are_not_presets_are_skipped_and_listed(user_path):
    assert (
        run_llm(
            "moa", "save", "good", "-o", "proposers", "fake-b", "-o", "aggregator", "fake-c"
        ).exit_code
        == 0
    )
    path = user_path / "moa" / "presets.json"
    data = json.loads(path.read_text())
    data.update(
        {
            "default": {
                "options": {"aggregator": "fake-c"}
            },  # would shadow the built-in moa-default
            "local": {"options": {"aggregator": "fake-c"}},
            "evil\n": {"options": {}},
            "five": 5,
            "listed": {"options": ["fake-a"]},
        }
    )
    path.write_text(json.dumps(data))

    models = run_llm("models").output
    assert "MoA: moa-good" in models
    assert "moa-evil" not in models and "moa-five" not in models and "moa-listed" not in models
    assert models.count("MoA: moa-default") == 1
    # the built-in moa-default answers with the default model, not the hand-edited aggregator
    assert (
        run_llm("-m", "moa-default", "-o", "proposers", "fake-b", "q").stdout
        == "fake-a answers: q\n"
    )
    assert run_llm("-m", "moa-good", "q").stdout == "fake-c answers: q\n"

    listed = run_llm("moa", "list")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("moa-good: proposers fake-b; aggregator fake-c")
    assert lines[1:] == [
        f"{path}: skipped, not a preset: 'default' is reserved for the built-in moa-default; choose another name",
        f"{path}: skipped, not a preset: Invalid preset name 'evil\\n': use lowercase letters, digits, '.', '_' "
        "or '-' (it becomes the model id moa-NAME)",
        f"{path}: skipped, not a preset: Preset 'five' is not a JSON object",
        f"{path}: skipped, not a preset: Preset 'listed': options is not a JSON object",
        f"{path}: skipped, not a preset: 'local' is reserved for the built-in moa-local; choose another name",
    ]
    as_json = {item["name"]: item for item in json.loads(run_llm("moa", "list", "--json").stdout)}
    assert as_json["good"]["model_id"] == "moa-good" and "error" not in as_json["good"]
    assert as_json["five"] == {
        "name": "five",
        "model_id": None,
        "error": "Preset 'five' is not a JSON object",
    }

    # saving keeps the hand-edited entries; removing one by its name cleans it up
    assert run_llm("moa", "save", "other", "-o", "proposers", "fake-a").exit_code == 0
    assert run_llm("moa", "remove", "five").exit_code == 0
    assert preset_names(user_path) == ["default", "evil\n", "good", "listed", "local", "other"]


# --- unfinished runs --------------------------------------------------------


def unfinished_run():
    "A real run whose aggregator fails after the proposers answered; its id."
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a",
        "-o",
        "aggregator_options",
        '{"fail": "agg down"}',
        "-o",
        "retries",
        "0",
        "q",
    )
    assert result.exit_code == 1
    return result.stderr.rsplit(" ", 1)[1].strip()


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"[1, 2]", "expected a JSON object"),
        (b'{"id": 5}', "not an unfinished run (id is not text)"),
        (b'{"run": {}}', "not an unfinished run (id is missing)"),
        (
            b'{"id": "01bad", "run": {"proposer_layers": 5}}',
            "not an unfinished run (run.proposer_layers is not a list)",
        ),
        (b'{"id": "01bad", "run": "x"}', "not an unfinished run (run is not a JSON object)"),
        (b'{"id": "01bad", "model": ["m"]}', "not an unfinished run (model is not text)"),
        (b'{"id": "01bad", "error": {"e": 1}}', "not an unfinished run (error is not text)"),
        (b'{"id": "01bad\xff"}', "not UTF-8 text"),
        (b"[" * 100000, "JSON nested too deeply"),
    ],
)
def test_damaged_unfinished_files_are_skipped_in_one_line(user_path, content, problem):
    good = unfinished_run()
    bad = user_path / "moa" / "unfinished" / "01bad.json"
    bad.write_bytes(content)
    listed = run_llm("moa", "unfinished")
    assert listed.exit_code == 0
    assert listed.stderr == f"Skipped {bad}: {problem}\n"
    assert listed.stdout.splitlines()[1].startswith(f"{good}  ")
    assert len(json.loads(run_llm("moa", "unfinished", "--json").stdout)) == 1
    missing = run_llm("moa", "unfinished", "01bad")
    assert missing.exit_code == 1
    assert (
        missing.stderr
        == "Error: No unfinished run matches '01bad'; 'llm moa unfinished' lists them\n"
    )
    assert run_llm("moa", "unfinished", good).exit_code == 0


def test_an_ambiguous_unfinished_prefix_says_so():
    first, second = unfinished_run(), unfinished_run()
    common = next(n for n in range(len(first)) if first[n] != second[n])
    result = run_llm("moa", "unfinished", first[:common])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {first[:common]!r} is ambiguous: it matches 2 unfinished runs; give more of the id\n"
    )
    shown = run_llm("moa", "unfinished", second)
    assert shown.stdout.startswith(f"# {second}  ") and "## Proposal 1: fake-a" in shown.stdout


def test_an_unfinished_run_with_odd_proposals_is_named_in_one_line(user_path):
    folder = user_path / "moa" / "unfinished"
    folder.mkdir(parents=True)
    odd = {
        "id": "01odd",
        "run": {
            "proposer_layers": [
                {"layer": 1, "proposers": [{"status": "ok", "model": "m", "text": ["not", "text"]}]}
            ]
        },
    }
    (folder / "01odd.json").write_text(json.dumps(odd))
    listed = run_llm("moa", "unfinished")
    assert listed.exit_code == 0 and listed.stdout == "No unfinished runs.\n"
    assert listed.stderr == (
        f"Skipped {folder / '01odd.json'}: not an unfinished run "
        "(run.proposer_layers.0.proposers.0.text is not text)\n"
    )


# --- logs.db rows that only look like runs ---------------------------------


def set_response_json(user_path, turn_id, value):
    conn = sqlite3.connect(user_path / "logs.db")
    with conn:
        conn.execute("update turns set response_json = ? where id = ?", [value, turn_id])
    conn.close()


def turn_ids(user_path):
    return [turn["id"] for turn in turns(user_path)]


NOT_RUNS = [  # another plugin's JSON: not a run, skipped without a word
    '{"moa": 5}',
    '{"moa": "x", "other": "plugin"}',
    '{"meta": {"moa": 1}}',
]
BAD_RECORDS = [  # a run's record edited out of shape: named, with what is wrong
    ('{"moa": {"proposer_layers": "x"}}', "proposer_layers is not a list"),
    (
        '{"moa": {"proposer_layers": [{"layer": 1, "proposers": [{"model": "m", "status": "ok", "started_ms": "soon"}]}]}}',
        "proposer_layers.0.proposers.0.started_ms is not a whole number",
    ),
    (
        '{"moa": {"aggregator": {"model": "m", "status": "ok", "started_ms": 1, "ended_ms": 1e400}}}',
        "aggregator.ended_ms: Input should be a finite number",
    ),
    (
        '{"moa": {"wall_ms": 1' + "0" * 400 + "}}",
        "wall_ms: Input should be less than or equal to 1000000000000",
    ),
]


def test_rows_that_are_not_runs_are_skipped_and_bad_records_named(user_path):
    moa("-o", "proposers", "fake-a,fake-b", "-o", "aggregator", "fake-c", "the real run")
    values = NOT_RUNS + [value for value, _ in BAD_RECORDS]
    for n in range(len(values)):
        assert run_llm("-m", "fake-a" if n % 2 else "moa-default", f"row {n}").exit_code == 0
    real, *others = turn_ids(user_path)
    for turn_id, value in zip(others, values):
        set_response_json(user_path, turn_id, value)
    bad_ids = others[len(NOT_RUNS) :]
    warnings = [
        f"Warning: skipped MoA run {turn_id}: {problem}"
        for turn_id, (_, problem) in zip(bad_ids, BAD_RECORDS)
    ][::-1]  # newest first

    runs = run_llm("moa", "runs")
    assert runs.exit_code == 0, runs.output
    lines = runs.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith(real)
    assert runs.stderr.splitlines() == warnings
    latest = run_llm(
        "moa", "runs", "-n", "1", "--json"
    )  # the newest rows are not runs: it looks further back
    assert [run["id"] for run in json.loads(latest.stdout)] == [real]
    shown = run_llm("moa", "show")  # the latest run that reads, and what was skipped on the way
    assert shown.exit_code == 0 and shown.stdout.startswith(f"# MoA run {real}\n")
    assert "the real run" in shown.stdout
    assert shown.stderr.splitlines() == warnings
    for turn_id in others[: len(NOT_RUNS)]:
        result = run_llm("moa", "show", turn_id)
        assert result.exit_code == 1 and result.stderr == f"Error: No MoA run matches {turn_id!r}\n"
    for turn_id, (_, problem) in zip(bad_ids, BAD_RECORDS):
        result = run_llm("moa", "show", turn_id)
        assert result.exit_code == 1 and result.stderr == f"Error: MoA run {turn_id}: {problem}\n"


@pytest.mark.parametrize(
    "value", ['not json "moa": here', '{"moa": ' + "[" * 5000 + "]" * 5000 + "}"]
)
def test_a_turn_llm_itself_cannot_read_gives_one_line(user_path, value):
    moa("-o", "proposers", "fake-a", "real")
    moa("-o", "proposers", "fake-a", "damaged")
    set_response_json(user_path, turn_ids(user_path)[1], value)
    for command in (["moa", "runs"], ["moa", "show"]):
        result = run_llm(*command)
        if result.exit_code == 0:  # skipped
            assert "real" in run_llm("moa", "show").stdout
        else:
            assert (
                result.stderr.startswith(f"Error: {user_path / 'logs.db'}: ")
                and result.stderr.count("\n") == 1
            )


# --- a file where the plugin's folder should be ------------------------------


def test_a_file_where_the_moa_folder_should_be(user_path):
    folder = user_path / "moa"
    folder.write_text("not a folder")
    assert run_llm("-m", "fake-a", "hi").stdout == "fake-a answers: hi\n"
    assert run_llm("models").exit_code == 0
    assert (
        run_llm("-m", "moa-default", "-o", "proposers", "fake-b", "q").stdout
        == "fake-a answers: q\n"
    )

    saved = run_llm("moa", "save", "p", "-o", "proposers", "fake-a")
    assert saved.exit_code == 1
    assert (
        saved.stderr
        == f"Error: {folder}: cannot be created, a file stands where a folder should be\n"
    )
    listed = run_llm("moa", "list")
    assert listed.exit_code == 1
    assert listed.stderr == (
        f"Error: {folder / 'presets.json'}: cannot be read, "
        "a file stands where a folder should be\n"
    )
    unfinished = run_llm("moa", "unfinished")
    assert unfinished.exit_code == 0 and unfinished.stdout == "No unfinished runs.\n"
    assert (
        unfinished.stderr
        == f"Skipped {folder}: cannot be read, a file stands where a folder should be\n"
    )
    one = run_llm("moa", "unfinished", "01x")
    assert one.exit_code == 1 and one.stderr.count("\n") == 1
    assert folder.read_text() == "not a folder"


def test_a_failed_save_never_hides_the_runs_own_error(user_path):
    (user_path / "moa").write_text("not a folder")
    result = run_llm(
        "-m",
        "moa-default",
        "-o",
        "proposers",
        "fake-a",
        "-o",
        "aggregator_options",
        '{"fail": "HTTP 503 overloaded", "status": 503}',
        "q",
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: The aggregator failed after 1 proposal had been answered:"
    assert lines[1] == "  fake-a (aggregator 1): HTTP 503 overloaded"
    assert lines[2].startswith("(the answered proposals could not be saved: ")
    assert "Traceback" not in result.stderr and len(lines) == 3


# --- special files: FIFOs, devices, huge files, a folder for a lock ----------


def bounded(user_path, *args, timeout=30):
    """A real llm process that must end within ``timeout`` seconds and 4 GB of
    memory: a regression that blocks on a FIFO or reads /dev/zero fails here."""
    import resource

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    done = run_process(user_path, *args, timeout=timeout, preexec_fn=limit_memory)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "folder", "huge"])
def test_presets_json_that_is_not_a_small_regular_file(user_path, kind):
    folder = user_path / "moa"
    folder.mkdir()
    presets = folder / "presets.json"
    if kind == "fifo":
        os.mkfifo(presets)
    elif kind == "folder":
        presets.mkdir()
    elif kind == "huge":
        presets.write_text('{"p": {"options": {"proposers": "' + "a" * 11 * 2**20 + '"}}}')
    else:
        presets.symlink_to(kind)
    problem = "larger than 10 MB" if kind == "huge" else "not a regular file"
    # every llm command reads presets when it registers models: all keep working
    assert bounded(user_path, "-m", "fake-a", "hi")[:2] == (0, "fake-a answers: hi\n")
    assert bounded(user_path, "moa", "list") == (
        1,
        "",
        f"Error: {presets}: cannot be read, {problem}\n",
    )


def test_fifos_as_prices_and_unfinished_files_are_one_line(user_path):
    moa("-o", "proposers", "fake-a", "q")
    unfinished = user_path / "moa" / "unfinished"
    unfinished.mkdir(parents=True)
    os.mkfifo(unfinished / "01fifo.json")
    os.mkfifo(user_path / "moa" / "prices.json")
    code, stdout, stderr = bounded(user_path, "moa", "unfinished")
    assert (code, stdout) == (0, "No unfinished runs.\n")
    assert stderr == f"Skipped {unfinished / '01fifo.json'}: cannot be read, not a regular file\n"
    code, stdout, stderr = bounded(user_path, "moa", "runs")
    assert code == 0 and "moa-default" in stdout
    assert stderr.startswith("Warning: ") and stderr.count("\n") == 1
    assert f"{user_path / 'moa' / 'prices.json'}: cannot be read, not a regular file" in stderr
    code, _, stderr = bounded(user_path, "moa", "prices", "set", "fake-a", "1", "2")
    assert code == 1 and stderr == (
        f"Error: {user_path / 'moa' / 'prices.json'}: cannot be read, not a regular file\n"
    )


@pytest.mark.parametrize(
    "command", [["save", "p", "-o", "proposers", "fake-a"], ["prices", "set", "fake-a", "1", "2"]]
)
def test_a_folder_where_a_lock_file_goes(user_path, command):
    name = "presets.json" if command[0] == "save" else "prices.json"
    lock = user_path / "moa" / f"{name}.lock"
    lock.mkdir(parents=True)
    result = run_llm("moa", *command)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {lock}: cannot be used as a lock file (Is a directory)\n"
    assert not (user_path / "moa" / name).exists()
