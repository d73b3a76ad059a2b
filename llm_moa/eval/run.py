"""``llm moa eval``: does a combo beat a single model on your prompts, and at what cost?

The modes, the scores and the results file are described in the README
("Does it pay off?"). Results are appended as they arrive, so an interrupted
eval resumes where it stopped and never pays twice for the same answer.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import llm

from .. import host, prices
from ..core.plan import validate_model_options
from ..core.prompts import judge_request
from ..core.record import describe_error
from ..errors import MoaError
from ..files.storage import locked
from ..text import shorten, table, visible

ORDERS = ("candidate-first", "baseline-first")


@dataclass(frozen=True)
class Row:
    line: int
    prompt: str
    system: str | None = None
    answer: str | None = None

    @property
    def key(self) -> str:
        "Identifies the prompt in the results file, whatever its position."
        return hashlib.sha256(f"{self.system or ''}\0{self.prompt}".encode()).hexdigest()[:16]


# --- reading prompts -----------------------------------------------------------


def read_rows(source: str) -> list[Row]:
    "JSONL or CSV rows with `prompt`, optional `system` and `answer`; `-` is stdin. UTF-8, BOM or not."
    if source == "-":
        data, name = sys.stdin.buffer.read(), "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise MoaError(f"No such file: {source}")
        try:
            data, name = path.read_bytes(), path.name
        except OSError as ex:
            raise MoaError(f"{source}: cannot be read ({ex.strerror or ex})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as ex:
        line = data[: ex.start].count(b"\n") + 1
        raise MoaError(f"{name} line {line}: not UTF-8 text (save the file as UTF-8)")
    if not text.strip():
        raise MoaError(f"{name} has no prompts")
    looks_csv = source.lower().endswith(".csv") or text.lstrip()[:1] not in ("{", "[")
    rows = _csv_rows(text, name) if looks_csv else _jsonl_rows(text, name)
    if not rows:
        raise MoaError(f"{name} has no prompts")
    return rows


def _jsonl_rows(text: str, name: str) -> list[Row]:
    rows = []
    for number, line in enumerate(
        text.split("\n"), 1
    ):  # not splitlines: JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as ex:
            raise MoaError(f"{name} line {number}: invalid JSON ({ex.args[0]})")
        except RecursionError:
            raise MoaError(f"{name} line {number}: JSON nested too deeply")
        rows.append(_row(data, number, name))
    return rows


def _csv_rows(text: str, name: str) -> list[Row]:
    csv.field_size_limit(
        max(csv.field_size_limit(), len(text))
    )  # a prompt may be as long as the file
    reader = csv.DictReader(io.StringIO(text))
    try:
        if not reader.fieldnames or "prompt" not in reader.fieldnames:
            found = (
                shorten(visible(", ".join(reader.fieldnames or []), newlines=False), 100) or "none"
            )
            raise MoaError(f"{name}: CSV needs a 'prompt' column (found: {found})")
        return [_row(data, number, name) for number, data in enumerate(reader, 2)]
    except csv.Error as ex:
        raise MoaError(f"{name} line {reader.line_num}: invalid CSV ({ex})")


def _row(data: Any, number: int, name: str) -> Row:
    if not isinstance(data, dict):
        raise MoaError(f"{name} line {number}: expected an object with a 'prompt'")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise MoaError(f"{name} line {number}: missing or empty 'prompt'")
    for key in ("system", "answer"):
        if data.get(key) is not None and not isinstance(data[key], (str, int, float)):
            raise MoaError(f"{name} line {number}: '{key}' must be text")
    answer = data.get("answer")
    system = data.get("system")
    return Row(
        number,
        prompt,
        str(system) if system else None,
        None if answer in (None, "") else str(answer),
    )


# --- the results file ----------------------------------------------------------


class Results:
    """Append-only JSONL of answers and judgements, which several evals may share.

    Only successes are done: a failure is kept for the record and the report,
    and made again on the next run. So are answers and judgements made with
    other saved options than today's (``options_sha`` tells them apart).

    A line that cannot be read (torn by a crash, edited by hand, not this
    module's) is skipped and counted in ``skipped``."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[tuple, dict] = {}
        self.skipped = 0
        try:
            lines = path.read_bytes().splitlines() if path.exists() else []
        except OSError as ex:
            raise MoaError(f"{path}: cannot be read ({ex.strerror or ex})")
        for line in filter(bytes.strip, lines):
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # torn, not UTF-8, or nested too deeply
                record = None
            if _readable(record):
                self._index(record)
            else:
                self.skipped += 1

    def _index(self, record: dict) -> None:
        "The latest record of its answer or judgement; a failure never hides a success."
        if record["type"] in _NAMES:
            key = _identity(record)
            if "error" not in record or "error" in self.records.get(key, {"error": None}):
                self.records[key] = record

    def get(self, identity: dict, failed: bool = False) -> dict:
        """The answer or judgement made (see Eval.answer_id); with ``failed``,
        the latest failure when none was made. {} when there is none."""
        record = self.records.get(_identity(identity), {})
        return record if failed or "error" not in record else {}

    def add(self, record: dict) -> None:
        """Append one line under the file's lock (so evals sharing the file
        never interleave), after ending a line torn by an earlier crash."""
        line = json.dumps(record).encode() + b"\n"
        with locked(self.path):
            try:
                with open(self.path, "a+b") as fp:
                    if fp.seek(0, os.SEEK_END):
                        fp.seek(-1, os.SEEK_END)
                        line = line if fp.read(1) == b"\n" else b"\n" + line
                    fp.write(line)
                    fp.flush()
                    os.fsync(fp.fileno())
            except OSError as ex:
                raise MoaError(f"{self.path}: cannot be written ({ex.strerror or ex})")
        self._index(record)


_NAMES = {
    "answer": ("model", "key"),
    "judgement": ("candidate", "baseline", "judge", "key", "order"),
}


def _identity(record: dict) -> tuple:
    "What a record is the answer or judgement of: its models, prompt, order and saved options."
    return (
        record["type"],
        *(record[name] for name in _NAMES[record["type"]]),
        record.get("options_sha"),
    )


def _readable(record: Any) -> bool:
    "Whether a record read back has the fields, of the types, that this module writes."
    if not isinstance(record, dict):
        return False
    kind = record.get("type")
    if kind == "error":
        return True  # a task that raised: kept for the record, not read back
    if kind not in ("answer", "judgement") or not all(
        isinstance(record.get(n), str) for n in _NAMES[kind]
    ):
        return False  # (a tuple: `kind in _NAMES` raises when kind is a list)
    if record.get("options_sha") is not None and not isinstance(record["options_sha"], str):
        return False
    billed = record.get("billed")
    if billed is not None and not (
        isinstance(billed, list)
        and all(isinstance(call, dict) and isinstance(call.get("model"), str) for call in billed)
    ):
        return False
    if kind == "judgement":
        return record.get("winner") in (None, "candidate", "baseline") and record.get(
            "verdict"
        ) in (None, "A", "B", "tie")
    numbers = [
        record.get(name) for name in ("duration_ms", "calls", "input_tokens", "output_tokens")
    ]
    if not all(
        n is None or type(n) in (int, float) and abs(n) < 1e15 for n in numbers
    ):  # 10**400 is no float
        return False
    return isinstance(record.get("error"), str) or (
        isinstance(record.get("text"), str) and numbers[0] is not None
    )


# --- running -------------------------------------------------------------------


@dataclass
class Eval:
    "The prompts, the models that answer them, how they are scored, and the results file."

    rows: list[Row]
    models: list[str]  # every model that answers, candidates and baseline
    results: Results
    judge: str | None = None
    baseline: str | None = None
    grade: str | None = None
    concurrency: int = 4
    options: dict[str, dict] = field(
        default_factory=dict
    )  # model id -> its saved options, as `llm -m` uses them
    prices: prices.Prices | None = None  # for dollars in the report; None: no dollars
    budget: prices.Budget | None = None  # --max-cost: what this run's new calls have cost
    not_started: int = 0  # tasks the budget stopped before they started

    def answer_id(self, model: str, row: Row) -> dict:
        "What identifies the model's answer to the row in the results file."
        return {
            "type": "answer",
            "model": model,
            "key": row.key,
            "options_sha": self.options_sha(model),
        }

    def judgement_id(self, candidate: str, row: Row, order: str) -> dict:
        "What identifies the judge's verdict on the candidate against the baseline, shown in this order."
        models = {"candidate": candidate, "baseline": self.baseline, "judge": self.judge}
        return {
            "type": "judgement",
            **models,
            "key": row.key,
            "order": order,
            "options_sha": self.options_sha(*models.values()),
        }

    def answer(self, model: str, row: Row) -> dict:
        "The model's answer to the row; {} when it gave none."
        return self.results.get(self.answer_id(model, row))

    def judgement(self, candidate: str, row: Row, order: str) -> dict:
        "The judge's verdict on the candidate against the baseline in this order; {} when there is none."
        return self.results.get(self.judgement_id(candidate, row, order))

    def pairs(self) -> list[tuple[str, Row, str]]:
        "Every judgement the eval asks for, as (candidate, row, order); none when graded."
        return [
            (c, row, order)
            for c in self.models
            if self.judge and c != self.baseline
            for row in self.rows
            for order in ORDERS
        ]

    def options_sha(self, *models: str | None) -> str | None:
        "Identifies the saved options these models run with; None when they have none."
        options = [self.options.get(model) or {} for model in models]
        if not any(options):
            return None
        return hashlib.sha256(
            json.dumps(options, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]


def plan(
    source: str,
    models: Iterable[str],
    judge: str | None,
    baseline: str | None,
    grade: str | None,
    limit: int | None,
    concurrency: int,
    out: str | None,
    max_cost: str | None,
    warn: Callable[[str], None],
) -> Eval:
    """The eval the command line asks for, every input and model checked before
    any call; one-line errors. Prices for the report's dollars and, with
    --max-cost, a budget for this run's calls, refused when a model the eval
    calls has no price: it could not be kept."""
    if bool(judge) == bool(grade):
        raise MoaError("Choose one of --judge MODEL (pairwise) or --grade exact|contains|regex")
    if baseline and not judge:
        raise MoaError("--baseline goes with --judge")
    rows = read_rows(source)[:limit]
    missing = [row.line for row in rows if grade and row.answer is None]
    if missing:
        raise MoaError(f"--grade needs an 'answer' in every row; line {missing[0]} has none")
    names = list(dict.fromkeys(models))
    resolved, options = (
        {},
        {},
    )  # id or alias -> model, each resolved once; model id -> its saved options
    for name in dict.fromkeys(names + [name for name in (judge, baseline) if name]):
        try:
            model = resolved[name] = host.get_model(name)
        except llm.UnknownModelError:
            raise MoaError(f"Unknown model {name!r}; run 'llm models' to list the available models")
        # each model runs as `llm -m` runs it, with the options saved by `llm models options set`
        options[model.model_id] = host.saved_model_options(model.model_id)
        validate_model_options("saved options of", model.model_id, model, options[model.model_id])
    if judge:
        # by default, the first candidate that is not a MoA model, else the last one
        baseline = baseline or next(
            (n for n in names if not getattr(resolved[n], "is_moa", False)), names[-1]
        )
        if baseline not in names:
            names.append(baseline)
        if len(names) < 2:
            raise MoaError("--judge compares candidates with a baseline: give at least two models")
    # --out, else PROMPTS.eval.jsonl next to the prompts, else moa-eval-results.jsonl for stdin
    path = Path(
        out
        or ("moa-eval-results.jsonl" if source == "-" else Path(source).with_suffix(".eval.jsonl"))
    )
    ev = Eval(
        rows=rows,
        models=[resolved[name].model_id for name in names],
        results=Results(path),
        judge=resolved[judge].model_id if judge else None,
        baseline=resolved[baseline].model_id if judge else None,
        grade=grade,
        concurrency=concurrency,
        options=options,
    )
    if max_cost is None:
        ev.prices = prices.load(warn=warn)
        return ev
    cap = prices.parse_cap(max_cost)
    ev.prices = prices.Prices()  # prices that cannot be read are an error here, not a warning
    called = [
        name
        for model in resolved.values()
        for name in prices.models_called(model, options[model.model_id])
    ]
    unpriced = [name for name in dict.fromkeys(called) if ev.prices.price(name) is None]
    if unpriced:
        raise MoaError(
            f"--max-cost needs a price for every model the eval calls; unpriced: "
            f"{shorten(', '.join(unpriced), 200)} (llm moa prices set MODEL INPUT OUTPUT)"
        )
    ev.budget = prices.Budget(cap, ev.prices)
    return ev


def cap_reached(ev: Eval) -> str:
    "How far an eval stopped by --max-cost got, and how to go on."
    answers = sum(1 for model in ev.models for row in ev.rows if ev.answer(model, row))
    done = f"{answers} of {len(ev.models) * len(ev.rows)} answers"
    if ev.judge:
        done += (
            f" and {sum(1 for p in ev.pairs() if ev.judgement(*p))} of {len(ev.pairs())} judgements"
        )
    return (
        f"Stopped at the --max-cost cap of {prices.format_usd(ev.budget.cap)}: this run's calls cost "
        f"{ev.budget.spent.text()}; {done} are made. Paid answers are kept in {ev.results.path}: "
        "run the same command again to go on."
    )


def run(ev: Eval, progress: Callable[[str, int, int], None] | None = None) -> None:
    "Make every missing answer, then every missing judgement, saving each as it arrives."
    tasks = [partial(_answer, ev, m, r) for m in ev.models for r in ev.rows if not ev.answer(m, r)]
    _in_parallel(tasks, ev, progress and partial(progress, "answers"))
    tasks = [
        partial(_judgement, ev, c, r, o)
        for c, r, o in ev.pairs()
        if ev.answer(c, r) and ev.answer(ev.baseline, r) and not ev.judgement(c, r, o)
    ]
    _in_parallel(tasks, ev, progress and partial(progress, "judgements"))


def _in_parallel(tasks: list[Callable[[], dict]], ev: Eval, progress: Callable | None) -> None:
    """Run the tasks on daemon threads (so Ctrl-C never waits for a call), at
    most ev.concurrency at once, saving each result as it arrives. Once the
    budget (--max-cost) is reached no task starts; those running finish and are kept."""
    done: queue.SimpleQueue = queue.SimpleQueue()
    waiting, running = list(reversed(tasks)), 0
    while True:
        if progress and tasks:
            progress(len(tasks) - len(waiting) - running, len(tasks))
        while waiting and running < ev.concurrency and not (ev.budget and ev.budget.reached):
            threading.Thread(
                target=_run_task, args=(waiting.pop(), done), name="moa-eval", daemon=True
            ).start()
            running += 1
        if not running:
            ev.not_started += len(waiting)
            return
        record = done.get()
        running -= 1
        ev.results.add(record)
        if ev.budget:
            ev.budget.add(record.get("billed") or [])


def _run_task(task: Callable[[], dict], done: queue.SimpleQueue) -> None:
    try:
        done.put(task())
    except BaseException as ex:  # noqa: BLE001 - a task never kills the eval
        done.put({"type": "error", "error": describe_error(ex)})


def _call(ev: Eval, record: dict, model_id: str, prompt: str, system: str | None) -> tuple | None:
    """Ask the model as `llm -m MODEL` would, and keep the calls it billed in
    the record, to be priced in the report. The model is resolved afresh each
    time, as model objects need not be thread-safe. The reply's (text, usage,
    response JSON); None, with the error in the record, when it failed."""
    try:
        response = host.get_model(model_id).prompt(
            prompt, system=system, **ev.options.get(model_id, {})
        )
        text, usage, data = response.text(), response.usage(), response.json()
        record["billed"] = prices.billed_calls(data, model_id, usage.input, usage.output)
        return text, usage, data
    except Exception as ex:  # noqa: BLE001 - kept for the report, and made again on the next run
        record["error"] = describe_error(ex)
        return None


def _answer(ev: Eval, model_id: str, row: Row) -> dict:
    "One answer, with its calls, tokens and time."
    record = {**ev.answer_id(model_id, row), "line": row.line}
    start = time.monotonic()
    reply = _call(ev, record, model_id, row.prompt, row.system)
    if reply:
        text, usage, data = reply
        run_record = data.get("moa") if isinstance(data, dict) else None
        record.update(
            text=text,
            calls=run_record["calls"] if run_record else 1,
            input_tokens=usage.input,
            output_tokens=usage.output,
        )
    record["duration_ms"] = int((time.monotonic() - start) * 1000)
    return record


def _judgement(ev: Eval, candidate: str, row: Row, order: str) -> dict:
    "The judge's verdict on two answers, shown in this order."
    mine, theirs = ev.answer(candidate, row)["text"], ev.answer(ev.baseline, row)["text"]
    first, second = (mine, theirs) if order == "candidate-first" else (theirs, mine)
    system, prompt = judge_request(row.prompt, row.system, first, second)
    record = ev.judgement_id(candidate, row, order)
    reply = _call(ev, record, ev.judge, prompt, system)
    if reply:
        record["raw"] = reply[0]
        verdict = record["verdict"] = parse_verdict(
            reply[0]
        )  # "A", "B", "tie" or None (unreadable)
        record["winner"] = (
            None
            if verdict in (None, "tie")
            else ("candidate" if (verdict == "A") == (order == "candidate-first") else "baseline")
        )
    return record


_VERDICT = re.compile(r"verdict\W{0,5}(?:answer\s+)?\[?\[?\s*(A|B|tie|draw|equal)\b", re.IGNORECASE)
_BRACKETED = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
_BARE = re.compile(r"^[\s.*\"'`]*(?:answer\s+)?(A|B|tie)[\s.*\"'`]*$", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    "The judge's verdict: the last 'VERDICT: X' (or [[X]], or a bare X); None if unreadable."
    found = _VERDICT.findall(text) or _BRACKETED.findall(text) or _BARE.findall(text)
    if not found:
        return None
    value = found[-1].lower()
    return value.upper() if value in ("a", "b") else "tie"


# --- scoring -------------------------------------------------------------------


def grade(kind: str, response: str, expected: str) -> bool:
    if kind == "regex":
        try:
            return re.search(expected, response, re.IGNORECASE | re.DOTALL) is not None
        except re.error:
            return False

    def normal(text):
        return " ".join(text.casefold().split()).strip(" .")

    if kind == "exact":
        return normal(response) == normal(expected)
    return normal(expected) in normal(response)


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    "95% Wilson score interval; ties may count as half successes."
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentile(values: list[float], q: float) -> float | None:
    "Nearest-rank percentile."
    if not values:
        return None
    return sorted(values)[max(0, math.ceil(q * len(values)) - 1)]


def report(ev: Eval) -> dict:
    "What --json prints, and what the table, the chart and --csv show."
    candidates = []
    for model in ev.models:
        records = [ev.results.get(ev.answer_id(model, row), failed=True) for row in ev.rows]
        answered = [r for r in records if r and "error" not in r]
        errors = [r["error"] for r in records if "error" in r]
        latencies = [a["duration_ms"] / 1000 for a in answered]
        entry: dict[str, Any] = {
            "model": model,
            "role": "baseline" if model == ev.baseline else "candidate",
            "prompts": len(ev.rows),
            "answered": len(answered),
            "failures": len(errors),
            "failure_reason": _most_common(errors),
            "mean_latency_s": _mean(latencies),
            "p90_latency_s": percentile(latencies, 0.9),
            "mean_calls": _mean([a.get("calls") or 1 for a in answered]),
            "mean_tokens": _mean(
                [(a.get("input_tokens") or 0) + (a.get("output_tokens") or 0) for a in answered]
            ),
            "mean_length_chars": _mean([len(a["text"]) for a in answered]),
        }
        if ev.grade:  # a failed answer counts as wrong
            correct = sum(
                1
                for row in ev.rows
                if (a := ev.answer(model, row)) and grade(ev.grade, a["text"], row.answer or "")
            )
            entry.update(_scored("accuracy", correct, len(ev.rows), correct=correct))
        elif model != ev.baseline:
            entry.update(_judged(ev, model))
        if ev.prices:  # dollars: a lower bound, naming what is missing, when not complete
            cost, correct = _cost(ev, answered), entry.get("correct")
            entry.update(
                usd=cost.usd,
                usd_per_prompt=cost.usd / len(answered) if answered else None,
                usd_per_correct=cost.usd / correct if correct else None,
                usd_complete=cost.complete,
                usd_missing=cost.missing(),
            )
        candidates.append(entry)
    judgements = [j for pair in ev.pairs() if (j := ev.judgement(*pair))]
    return {
        "mode": "graded" if ev.grade else "judged",
        "grade": ev.grade,
        "judge": ev.judge,
        "baseline": ev.baseline,
        "prompts": len(ev.rows),
        "results_file": str(ev.results.path),
        "candidates": candidates,
        "judging_cost": _cost(ev, judgements).to_json() if ev.prices and ev.judge else None,
    }


def _cost(ev: Eval, records: list[dict]) -> prices.Cost:
    """What these answers or judgements cost, from the calls each one recorded.
    One recorded before costs were kept counts as a call of unknown usage, so
    the total is a lower bound naming it."""
    calls = []
    for record in records:
        unknown = {"model": record.get("model", record.get("judge")), "usage": "unknown"}
        calls += [unknown] if record.get("billed") is None else record["billed"]
    return prices.cost_of_calls(calls, ev.prices)


def _judged(ev: Eval, candidate: str) -> dict:
    outcomes = [_outcome(ev, candidate, row) for row in ev.rows]
    wins, ties, losses = (outcomes.count(outcome) for outcome in (1, 0, -1))
    unreadable = sum(
        1
        for row in ev.rows
        for order in ORDERS
        if ev.judgement(candidate, row, order).get("verdict", "x") is None
    )
    return _scored(
        "win_rate",
        wins + ties / 2,
        len(outcomes),
        wins=wins,
        ties=ties,
        losses=losses,
        unreadable_verdicts=unreadable,
    )


def _scored(metric: str, successes: float, n: int, **counts: int) -> dict:
    low, high = wilson(successes, n)
    return {
        "metric": metric,
        **counts,
        "quality": successes / n if n else None,
        "ci_low": low,
        "ci_high": high,
    }


def _outcome(ev: Eval, candidate: str, row: Row) -> int:
    """1 for a win, -1 for a loss, 0 for a tie on one prompt. Both orders must
    agree for a win or a loss; a missing answer loses to a present one."""
    mine, theirs = bool(ev.answer(candidate, row)), bool(ev.answer(ev.baseline, row))
    if not (mine and theirs):
        return mine - theirs
    winners = {ev.judgement(candidate, row, order).get("winner") for order in ORDERS}
    return (winners == {"candidate"}) - (winners == {"baseline"})


def _most_common(errors: list[str]) -> str | None:
    "The commonest error, safe to print: it comes from a model or a server."
    if not errors:
        return None
    return shorten(visible(max(set(errors), key=errors.count), newlines=False), 100)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# --- output --------------------------------------------------------------------


def to_table(summary: dict) -> str:
    candidates = summary["candidates"]
    priced = "usd" in candidates[0]  # -m is required: there is always a model
    dollars = (
        (["usd_per_prompt"] + (["usd_per_correct"] if summary["mode"] == "graded" else []))
        if priced
        else []
    )
    reasons = any(c["failure_reason"] for c in candidates)  # a column only when something failed
    rows = [
        ["model", "quality (95% CI)", "answered", "mean s", "p90 s", "calls", "tokens"]
        + ["$/prompt", "$/correct"][: len(dollars)]
        + ["length", "failures"]
        + (["most common failure"] if reasons else [])
    ]
    for c in candidates:
        rows.append(
            [
                c["model"],
                _quality(c),
                f"{c['answered']}/{c['prompts']}",
                _fmt(c["mean_latency_s"], "{:.2f}"),
                _fmt(c["p90_latency_s"], "{:.2f}"),
                _fmt(c["mean_calls"], "{:.1f}"),
                _fmt(c["mean_tokens"], "{:,.0f}"),
            ]
            + [_usd(c[key], c["usd_complete"]) for key in dollars]
            + [_fmt(c["mean_length_chars"], "{:,.0f}"), str(c["failures"])]
            + ([c["failure_reason"] or ""] if reasons else [])
        )
    lines = [table(rows)]
    if priced:  # model names come from the results file: shown safe
        missing = ", ".join(dict.fromkeys(m for c in candidates for m in c["usd_missing"]))
        note = "\nDollars are estimates from your prices (llm moa prices) or genai-prices' bundled data."
        lines.append(
            visible(
                note + (f" ≥ marks a lower bound and ? an unknown: {missing}." if missing else "")
            )
        )
        if summary["judging_cost"]:
            lines.append(visible(f"Judging cost {summary['judging_cost']['text']}."))
    if summary["mode"] == "judged":
        lines.append(
            f"\nWin rate against {summary['baseline']}, judged by {summary['judge']} both ways round "
            "(ties count half). Judges tend to favour longer answers: compare the length column."
        )
    return "\n".join(lines)


def _usd(value: float | None, complete: bool) -> str:
    if value is None:
        return "-"
    if complete:
        return prices.format_usd(value)
    return f"≥{prices.format_usd(value)}" if value > 0 else "?"  # a lower bound, never $0


def _quality(c: dict) -> str:
    if c.get("quality") is None:
        return "baseline" if c["role"] == "baseline" else "-"
    if c["metric"] == "accuracy":
        return f"acc {c['quality']:.2f} ({c['ci_low']:.2f}-{c['ci_high']:.2f})"
    return f"win {c['quality']:.2f} ({c['ci_low']:.2f}-{c['ci_high']:.2f}) {c['wins']}W/{c['ties']}T/{c['losses']}L"


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def to_csv(summary: dict) -> str:
    columns = [
        "model",
        "role",
        "metric",
        "quality",
        "ci_low",
        "ci_high",
        "wins",
        "ties",
        "losses",
        "correct",
        "prompts",
        "answered",
        "failures",
        "mean_latency_s",
        "p90_latency_s",
        "mean_calls",
        "mean_tokens",
        "usd_per_prompt",
        "usd_per_correct",
        "usd_complete",
        "mean_length_chars",
        "failure_reason",
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary["candidates"])
    return out.getvalue()


def text_chart(summary: dict, width: int = 50, height: int = 10) -> str:
    """Quality (up) against cost per prompt (right), one letter per model. The
    cost is in tokens when the models report usage, else in calls. The
    baseline has no quality of its own: it is the 0.5 line by definition."""
    candidates = summary["candidates"]
    key, unit = (
        ("mean_tokens", "tokens")
        if any(c["mean_tokens"] for c in candidates)
        else ("mean_calls", "calls")
    )
    points = [
        (
            c["model"] + (" (baseline)" if c.get("quality") is None else ""),
            c[key] or 0,
            0.5 if c.get("quality") is None else c["quality"],
        )
        for c in candidates
    ]
    cost_max = max([cost for _, cost, _ in points] + [1])
    grid = [[" "] * (width + 1) for _ in range(height + 1)]
    legend = []
    for number, (label, cost, quality) in enumerate(points):
        letter = chr(ord("A") + number % 26)
        row, x = grid[height - round(quality * height)], round(cost / cost_max * width)
        row[x] = letter if row[x] == " " else "*"  # * where models overlap
        legend.append(f"{letter} {label}" + (" (at *)" if row[x] == "*" else ""))
    lines = [f"quality against cost (mean {unit} per prompt)"]
    for i, cells in enumerate(grid):
        label = {0: "1.0", height // 2: "0.5", height: "0.0"}.get(i, "")
        lines.append(f"{label:>4} |{''.join(cells).rstrip()}")
    lines.append(f"     +{'-' * (width + 1)}")
    lines.append(f"      0{f'{cost_max:,.1f} {unit}':>{width}}")
    return "\n".join(lines + ["", *legend])
