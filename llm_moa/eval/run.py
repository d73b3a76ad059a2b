"""``llm moa eval``: does a combo beat a single model on your prompts, and at what cost?

The modes, the scores and the results file are described in the README
("Does it pay off?"). Results are appended as they arrive, so an interrupted
eval resumes where it stopped and never pays twice for the same answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
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
from ..core.record import StoredRun, describe_error
from ..errors import MoaError
from ..text import shorten
from .inputs import Row, read_rows
from .judge import judge_request, parse_verdict
from .results import ORDERS, Answer, Crashed, Judgement, Results, answer_key, judgement_key


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
    # model id -> its saved options, as `llm -m` uses them
    options: dict[str, dict] = field(default_factory=dict)
    prices: prices.Prices | None = None  # for dollars in the report; None: no dollars
    budget: prices.Budget | None = None  # --max-cost: what this run's new calls have cost
    not_started: int = 0  # tasks the budget stopped before they started

    def answer(self, model: str, row: Row, failed: bool = False) -> Answer | None:
        "The model's answer to the row (with ``failed``, else its latest failure); None when none."
        key = answer_key(model, row.key, self.options_sha(model))
        return self.results.get(key, failed)

    def judgement(self, candidate: str, row: Row, order: str, failed: bool = False) -> Any:
        "The judge's verdict on the candidate against the baseline in this order; None when none."
        models = (candidate, self.baseline, self.judge)
        key = judgement_key(models, row.key, order, self.options_sha(*models))
        return self.results.get(key, failed)

    def pairs(self) -> list[tuple[str, Row, str]]:
        "Every judgement the eval asks for, as (candidate, row, order), by prompt; none when graded."
        return [
            (c, row, order)
            for row in self.rows
            for c in self.models
            if self.judge and c != self.baseline
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


def prepare(
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
    """The eval the command line asks for, every input, model and file checked
    before any call; one-line errors. Prices for the report's dollars and, with
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
    # id or alias -> model, each resolved once; model id -> its saved options
    resolved, options = {}, {}
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
    ev = Eval(
        rows=rows,
        models=[resolved[name].model_id for name in names],
        results=Results(_results_path(source, out)),
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


def _results_path(source: str, out: str | None) -> Path:
    "--out, else PROMPTS.eval.jsonl next to the prompts, else moa-eval-results.jsonl for stdin."
    default = "moa-eval-results.jsonl" if source == "-" else Path(source).with_suffix(".eval.jsonl")
    path = Path(out or default)
    if source != "-" and path.exists() and os.path.samefile(path, source):
        raise MoaError(f"--out {out}: that is the prompts file; give the results another file")
    return path


def cap_reached(ev: Eval) -> str:
    "How far an eval stopped by --max-cost got, and how to go on."
    answers = sum(1 for model in ev.models for row in ev.rows if ev.answer(model, row))
    done = f"{answers} of {len(ev.models) * len(ev.rows)} answers"
    if ev.judge:
        judged = sum(1 for p in ev.pairs() if ev.judgement(*p))
        done += f" and {judged} of {len(ev.pairs())} judgements"
    return (
        f"Stopped at the --max-cost cap of {prices.format_usd(ev.budget.cap)}: this run's calls cost "
        f"{ev.budget.spent.text()}; {done} are made. Paid answers are kept in {ev.results.path}: "
        "run the same command again to go on."
    )


def run(ev: Eval, progress: Callable[[str, int, int], None] | None = None) -> None:
    """Make every missing answer, then every missing judgement, saving each as
    it arrives. By prompt, then model: a cap stops every model near the same prompt."""
    ev.results.check_lock()  # here, not in prepare: eval --plan writes nothing
    tasks = [partial(_answer, ev, m, r) for r in ev.rows for m in ev.models if not ev.answer(m, r)]
    _in_parallel(tasks, ev, progress and partial(progress, "answers"))
    tasks = [
        partial(_judgement, ev, c, r, o)
        for c, r, o in ev.pairs()
        if ev.answer(c, r) and ev.answer(ev.baseline, r) and not ev.judgement(c, r, o)
    ]
    _in_parallel(tasks, ev, progress and partial(progress, "judgements"))


def _in_parallel(tasks: list[Callable[[], Any]], ev: Eval, progress: Callable | None) -> None:
    """Run the tasks on daemon threads (so Ctrl-C never waits for a call), at
    most ev.concurrency at once, saving each result as it arrives. Once the
    budget (--max-cost) is reached no task starts; those running finish and are
    kept. Interrupted, it keeps every result that has arrived (see _Running for
    the MoA answers still running).

    Not core/calls.py's scheduler: that one runs the model calls of one MoA
    answer (retries, timeouts, quorum); a task here is a whole answer or
    judgement, perhaps a MoA run with a scheduler of its own."""
    done: queue.SimpleQueue = queue.SimpleQueue()
    waiting, running, tracked = list(reversed(tasks)), 0, _Running()
    try:
        while True:
            if progress and tasks:
                progress(len(tasks) - len(waiting) - running, len(tasks))
            while waiting and running < ev.concurrency and not (ev.budget and ev.budget.reached):
                task = partial(tracked.run, waiting.pop())
                threading.Thread(target=_run_task, args=(task, done), daemon=True).start()
                running += 1
            if not running:
                ev.not_started += len(waiting)
                return
            _keep(ev, done.get())
            running -= 1
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (host.on_command_end)
        while not done.empty():
            _keep(ev, done.get())
        raise


def _keep(ev: Eval, record: Answer | Judgement | Crashed) -> None:
    ev.results.add(record)
    if ev.budget:  # every paid call counts, whatever became of the answer
        ev.budget.add(getattr(record, "billed", None) or [])


def _run_task(task: Callable[[], Any], done: queue.SimpleQueue) -> None:
    try:
        done.put(task())
    except BaseException as ex:  # noqa: BLE001 - a task never kills the eval
        done.put(Crashed(type="error", error=describe_error(ex)))


class _Running:
    """Each task runs in a click context of its own, a child of the eval
    command's, so that a MoA run registers its end-of-command hook there
    (host.on_command_end) as it does under `llm -m`. When the command ends
    while tasks still run (Ctrl-C, SIGTERM), their contexts are closed: each
    MoA run saves its paid proposals for `llm moa unfinished` and says so. A
    task that finished drops its context unclosed. Outside the CLI, nothing."""

    def __init__(self) -> None:
        import click

        self.parent = click.get_current_context(silent=True)
        self.contexts: set = set()
        self.lock = threading.Lock()
        if self.parent is not None:
            host.on_command_end(self.close)  # on the main thread: SIGTERM unwinds it too

    def run(self, task: Callable[[], Any]) -> Any:
        if self.parent is None:
            return task()
        import click

        context = click.Context(self.parent.command, parent=self.parent)
        # as if typed (host.explicit_options): the eval's bar, not one block per MoA answer
        context.params["options"] = [("progress", "false")]
        with self.lock:
            self.contexts.add(context)
        try:
            with context.scope(cleanup=False):
                return task()
        finally:
            with self.lock:
                self.contexts.discard(context)

    def close(self) -> None:
        with self.lock:
            contexts, self.contexts = self.contexts, set()
        for context in contexts:
            context.close()


def _call(
    ev: Eval, model_id: str, prompt: str, system: str | None
) -> tuple[str | None, Any, StoredRun | None, dict]:
    """Ask the model as `llm -m MODEL` would (a MoA model without its progress
    block: the eval has its own). The model is resolved afresh each time, as
    model objects need not be thread-safe. The reply's text (None when it
    failed), the response, its run record (a MoA model's; None for another, or
    one that does not parse), and the results record's fields: the calls it
    billed, to be priced in the report and counted by the budget, and the error."""
    response, made = None, {}
    try:
        model = host.get_model(model_id)
        options = {**ev.options.get(model_id, {})}
        if getattr(model, "is_moa", False):
            options["progress"] = False
        response = model.prompt(prompt, system=system, **options)
        text = response.text()
    except Exception as ex:  # noqa: BLE001 - kept for the report, and made again on the next run
        text, made["error"] = None, describe_error(ex)
    record = StoredRun.of(getattr(response, "response_json", None))
    made["billed"] = _billed(response, record, model_id, failed=text is None)
    return text, response, record, made


def _billed(response: Any, record: StoredRun | None, model_id: str, failed: bool) -> list[dict]:
    """Every call an answer paid for, whatever became of it: a failed MoA run's
    response still has its record and usage (the session sets them as the run
    ends). A failed plain call that reported no usage counts as none."""
    tokens = (None, None) if response is None else (response.input_tokens, response.output_tokens)
    if failed and tokens == (None, None) and record is None:
        return []
    return prices.billed_calls(record, model_id, *tokens)


def _answer(ev: Eval, model_id: str, row: Row) -> Answer:
    "One answer, with its calls, tokens and time."
    start = time.monotonic()
    text, response, record, made = _call(ev, model_id, row.prompt, row.system)
    if text is not None:
        made.update(
            text=text,
            calls=record.calls if record else 1,
            input_tokens=_count(response.input_tokens),
            output_tokens=_count(response.output_tokens),
        )
    key = {"model": model_id, "key": row.key, "options_sha": ev.options_sha(model_id)}
    duration = int((time.monotonic() - start) * 1000)
    return Answer.model_validate({**key, "line": row.line, **made, "duration_ms": duration})


def _count(value: Any) -> int | None:
    "A token count as a plugin reported it; one that cannot be true counts as unknown."
    return value if type(value) is int and 0 <= value < 10**15 else None


def _judgement(ev: Eval, candidate: str, row: Row, order: str) -> Judgement:
    "The judge's verdict on two answers, shown in this order."
    mine, theirs = ev.answer(candidate, row).text, ev.answer(ev.baseline, row).text
    first, second = (mine, theirs) if order == "candidate-first" else (theirs, mine)
    system, prompt = judge_request(row.prompt, row.system, first, second)
    text, _, _, made = _call(ev, ev.judge, prompt, system)
    if text is not None:
        verdict = parse_verdict(text)  # "A", "B", "tie" or None (unreadable)
        made.update(raw=text, verdict=verdict)
        if verdict in ("A", "B"):
            made["winner"] = (
                "candidate" if (verdict == "A") == (order == "candidate-first") else "baseline"
            )
    models = {"candidate": candidate, "baseline": ev.baseline, "judge": ev.judge}
    sha = ev.options_sha(*models.values())
    return Judgement.model_validate(
        {**models, "key": row.key, "order": order, "options_sha": sha, **made}
    )
