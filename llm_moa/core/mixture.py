"""The Mixture-of-Agents algorithm (Wang et al. 2024, arXiv:2406.04692).

Layer 1: every proposer answers the request. Layers 2..L-1: every proposer
answers again, seeing the previous layer's answers as references. Layer L: the
aggregator synthesises the last answers into one reply, streamed to the user
(or another strategy decides, below). With ``cascade``, the first
layer asks a few proposers first and the rest only when those disagree.

How the last layer's answers become one answer, the aggregation strategies:

* synthesize (the paper): the aggregator writes a new answer from the
  references; with ``window`` it reads a few at a time and carries its running
  synthesis forward (Self-MoA-Seq, Li et al. 2025).
* select: the aggregator names the best candidate, which is output verbatim.
  Candidates are shown in an order derived from a hash of the answers: judges
  favour positions, and seeded runs must repeat.
* vote: the most common answer wins without an aggregator call; a tie is
  settled as in select, among the tied answers.

Agreement can make the aggregator unnecessary: ``skip_if_agree`` here, and
``cascade`` in the first layer. Each run records what decided
its answer, and why, in ``run.decision``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from collections.abc import Generator, Iterator
from dataclasses import replace
from typing import Any

from ..errors import MoaRunError
from ..text import count, shorten
from .calls import Clock, run_calls
from .outliers import kept
from .plan import Member, Plan
from .prompts import REFINE, SELECT, SYNTHESIZE, Request, with_references
from .record import OK, SKIPPED, Call, Run


def mixture_of_agents(
    plan: Plan, run: Run, *, clock: Clock, stream: bool = True, stop: threading.Event | None = None
) -> Iterator[tuple[str, str]]:
    "Yield the final answer as ``(event_type, chunk)`` pairs."
    config = plan.config
    if plan.given_answers is not None:  # a tool-result turn that only the aggregator continues
        given = list(enumerate(plan.given_answers, 1))
        yield from synthesize(plan, run, given, clock=clock, stream=stream, stop=stop)
        return
    asked = plan.proposer_request or plan.request  # with tools: the proposers are told about them
    answers: list[str] = []
    calls: list[Call] = []
    for layer in range(1, config.layers):
        request = asked if layer == 1 else with_references(asked, answers, REFINE)
        first = (
            config.cascade if layer == 1 else None
        )  # cascade: the rest are asked only when the first disagree
        calls = _propose(plan, run, layer, request, 0, first, clock, stream, stop)
        if first:
            if cascade_agreed(plan, run, calls):
                yield from _as_reasoning(layer, calls) if config.show_proposals else ()
                yield "text", calls[0].text
                return
            calls += _propose(plan, run, layer, request, first, None, clock, stream, stop)
        answers = [call.text for call in kept(plan, run, calls)]  # outliers drop: see outliers.py
        _check_quorum(layer, calls, config.min_proposers)
        if config.show_proposals:
            yield from _as_reasoning(layer, calls)
    yield from decide(plan, run, calls, clock=clock, stream=stream, stop=stop)


def _propose(
    plan: Plan,
    run: Run,
    layer: int,
    request: Request,
    start: int,
    end: int | None,
    clock: Clock,
    stream: bool,
    stop: threading.Event | None,
) -> list[Call]:
    """Proposers start..end-1 answer the request. An ``end`` marks a cascade's
    first stage, which hears from all of its proposers; the rest of the layer
    then share its quorum and wait with the answers already in."""
    config = plan.config
    answered = sum(call.ok for call in run.layer_calls(layer))
    if end is not None:
        config = replace(config, wait=None, min_proposers=1)
    elif answered:
        config = replace(
            config,
            wait=config.wait and max(1, config.wait - answered),
            min_proposers=max(1, config.min_proposers - answered),
        )
    calls = [
        make_call(plan, run, m, layer, i, request)
        for i, m in enumerate(plan.proposers[start:end], start)
    ]
    for _ in run_calls(calls, config, clock=clock, stream=stream, stop=stop):
        pass
    return calls


def _check_quorum(layer: int, calls: list[Call], quorum: int) -> None:
    succeeded = sum(call.ok for call in calls)
    if succeeded >= quorum:
        return
    failed = [call for call in calls if call.status not in (OK, SKIPPED)]
    stopped = len(calls) - succeeded - len(failed)
    if succeeded == 0 and not stopped:
        head = f"No proposer answered in layer {layer} ({count(len(calls), 'call')} failed)"
    else:
        head = (
            f"Only {succeeded} of {len(calls)} proposers answered in layer {layer}; "
            f"min_proposers is {quorum}"
        )
    message = failure_message(head, failed)
    if stopped:
        message += f"\n  ({count(stopped, 'other call')} stopped once the quorum was out of reach)"
    raise MoaRunError(message)


def _as_reasoning(layer: int, calls: list[Call]) -> Iterator[tuple[str, str]]:
    for call in calls:
        if call.ok:
            yield (
                "reasoning",
                f"[layer {layer}, proposer {call.index + 1}: {call.member.model_id}]\n{call.text}\n\n",
            )


Events = Iterator[tuple[str, str]]
Candidate = tuple[int, str]  # (proposer number, its answer)
FINAL_PUNCTUATION = ".!?;:,…。！？"
KEY_LIMIT = 200  # characters of a normalised answer kept in the record


def decide(
    plan: Plan,
    run: Run,
    calls: list[Call],
    *,
    clock: Clock,
    stream: bool,
    stop: threading.Event | None,
) -> Events:
    "The answer from the last layer's calls, by the configured strategy."
    config = plan.config
    candidates = [(call.index + 1, call.text) for call in kept(plan, run, calls)]
    run.decision["aggregate"] = config.aggregate
    if (
        config.skip_if_agree
        and len(candidates) > 1
        and alike([text for _, text in candidates], plan.schema)
    ):
        run.decision.update(
            strategy="agreement",
            agreement=[n for n, _ in candidates],
            reason=f"all {len(candidates)} answers agree; no aggregator call",
        )
        yield "text", candidates[0][1]
    else:
        strategy = {"vote": vote, "select": select, "synthesize": synthesize}[config.aggregate]
        yield from strategy(plan, run, candidates, clock=clock, stream=stream, stop=stop)


# --- when are two answers the same? -------------------------------------------


def same_key(text: str, schema: dict | None = None) -> str:
    """What two answers must share to count as the same: the text with case,
    spacing and final punctuation ignored; with a schema, the parsed JSON
    written canonically (an answer that does not parse falls back to its text)."""
    if schema:
        try:
            return json.dumps(
                json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
        except (ValueError, RecursionError):
            pass
    return " ".join(text.casefold().split()).rstrip(FINAL_PUNCTUATION + " ")


def alike(texts: list[str], schema: dict | None) -> bool:
    return len({same_key(text, schema) for text in texts}) == 1


def cascade_agreed(plan: Plan, run: Run, calls: list[Call]) -> bool:
    "Whether the cascade's first proposers all answered alike (recorded either way)."
    agreed = all(call.ok for call in calls) and alike([call.text for call in calls], plan.schema)
    run.decision.update(
        aggregate=plan.config.aggregate, cascade={"first": len(calls), "escalated": not agreed}
    )
    if agreed:
        run.decision.update(
            strategy="cascade",
            agreement=[call.index + 1 for call in calls],
            reason=f"the first {len(calls)} of {len(plan.proposers)} proposers agree; "
            "the rest were not asked",
        )
    return agreed


def vote(
    plan: Plan,
    run: Run,
    candidates: list[Candidate],
    *,
    clock: Clock,
    stream: bool,
    stop: threading.Event | None,
) -> Events:
    "The most common answer, verbatim as its first proposer wrote it; a tie goes to select."
    groups: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(same_key(candidate[1], plan.schema), []).append(candidate)
    ranked = sorted(
        groups.items(), key=lambda item: -len(item[1])
    )  # stable: the first answered first
    run.decision["votes"] = [
        {"answer": shorten(key, KEY_LIMIT), "count": len(group), "proposers": [n for n, _ in group]}
        for key, group in ranked
    ]
    most = len(ranked[0][1])
    leaders = [group[0] for _, group in ranked if len(group) == most]
    if len(leaders) > 1:
        run.decision["tie"] = [n for n, _ in leaders]
        yield from select(plan, run, leaders, clock=clock, stream=stream, stop=stop)
        return
    run.decision.update(
        strategy="vote",
        winner=leaders[0][0],
        reason=f"{most} of {count(len(candidates), 'answer')} agree",
    )
    yield "text", leaders[0][1]


# --- select ------------------------------------------------------------------

_CHOICES = (  # how a reply may name its choice, most explicit first; the last mention counts
    ("choice line", re.compile(r"(?i)\bchoice\s*[:=#-]?\s*[\[(*\"']*\s*(\d{1,6})\b")),
    ("brackets", re.compile(r"\[\[\s*(\d{1,6})\s*\]\]")),
    (
        "answer n",
        re.compile(
            r"(?i)\b(?:answer|candidate|response|option)\s*(?:no\.?\s*|number\s*|#\s*)?(\d{1,6})\b"
        ),
    ),
    (
        "number",
        re.compile(r"(?m)^[^\w\n]*(\d{1,6})[^\w\n]*\s*\Z"),
    ),  # a last line that is a bare number
)  # at most 6 digits: int() refuses numbers of thousands of digits, and a reply may hold one


def select(
    plan: Plan,
    run: Run,
    candidates: list[Candidate],
    *,
    clock: Clock,
    stream: bool,
    stop: threading.Event | None,
) -> Events:
    "The candidate the aggregator picks, output verbatim; unparseable: the first one shown."
    digest = hashlib.sha256("\0".join(text for _, text in candidates).encode()).digest()
    shown = list(candidates)
    random.Random(digest).shuffle(shown)  # an order fixed by the answers (see above)
    # the judge only picks: it gets no tools, so it cannot act instead of choosing
    request = replace(with_references(plan.request, [text for _, text in shown], SELECT), tools=())
    judge = replace(plan, schema=None)  # its reply is a choice, not the answer: no --schema for it
    call = yield from ask_aggregator(
        judge, run, request, clock=clock, stream=stream, stop=stop, show=False
    )
    choice, parsed = parse_choice(call.text, [text for _, text in shown], plan.schema)
    picked = shown[(choice or 1) - 1]
    how = (
        f"the aggregator chose candidate {choice} ({parsed})"
        if choice
        else "the aggregator's choice could not be read; fell back to the first candidate shown"
    )
    run.decision.update(
        strategy="select",
        shown_order=[n for n, _ in shown],
        choice=choice,
        selected=picked[0],
        parsed=parsed,
        fallback=choice is None,
        reason=f"{how}: proposer {picked[0]}",
    )
    yield "text", picked[1]


def parse_choice(
    reply: str, shown: list[str], schema: dict | None = None
) -> tuple[int | None, str]:
    """The 1-based number of the chosen candidate and how it was read:
    "CHOICE: n", "[[n]]", "Answer n", a last line that is a bare number, or a
    reply that repeats exactly one candidate. ``(None, "unparseable")`` else."""
    lines = "\n".join(reply.splitlines())  # every kind of line break as "\n", for the last pattern
    for how, pattern in _CHOICES:
        found = pattern.findall(lines)
        if found:
            number = int(found[-1])
            return (number, how) if 1 <= number <= len(shown) else (None, "out of range")
    keys = [same_key(text, schema) for text in shown]
    if keys.count(same_key(reply, schema)) == 1:
        return keys.index(same_key(reply, schema)) + 1, "same text"
    return None, "unparseable"


def synthesize(
    plan: Plan,
    run: Run,
    candidates: list[Candidate],
    *,
    clock: Clock,
    stream: bool,
    stop: threading.Event | None,
) -> Events:
    """The aggregator writes the answer. With a window, step 1 reads the first
    N answers and each next step its running synthesis plus the next N-1;
    only the last step streams."""
    config = plan.config
    size = config.window or len(candidates)
    pending = [(f"proposer {n}", text) for n, text in candidates]
    references, pending = pending[:size], pending[size:]
    steps: list[dict] = []
    while True:
        request = with_references(
            plan.request, [text for _, text in references], config.aggregator_system or SYNTHESIZE
        )
        call = yield from ask_aggregator(
            plan, run, request, clock=clock, stream=stream, stop=stop, show=not pending
        )
        steps.append(
            {
                "step": len(steps) + 1,
                "references": [label for label, _ in references],
                "model": call.member.model_id,
            }
        )
        if not pending:
            break
        references, pending = (
            [(f"synthesis {len(steps)}", call.text), *pending[: size - 1]],
            pending[size - 1 :],
        )
    facts: dict[str, Any] = {
        "reason": f"the aggregator synthesised {count(len(candidates), 'answer')}"
    }
    if config.window:
        facts.update(
            windows=steps, aggregator_calls=sum(c.attempts > 0 for c in run.aggregator_calls)
        )
        facts["reason"] += f" in {count(len(steps), 'step')} of at most {config.window}"
    run.decision.update(strategy="synthesize", **facts)


# --- calling the aggregator ----------------------------------------------------


def ask_aggregator(
    plan: Plan,
    run: Run,
    request: Request,
    *,
    clock: Clock,
    stream: bool,
    stop: threading.Event | None,
    show: bool = True,
) -> Generator[tuple[str, str], None, Call]:
    "Try each aggregator in turn until one answers; its chunks are passed on when ``show``."
    layer = plan.config.layers
    tried = []
    for index, member in enumerate(plan.aggregators):
        call = make_call(plan, run, member, layer, index, request, stream=show)
        tried.append(call)
        yield from run_calls([call], plan.config, clock=clock, stream=stream, stop=stop)
        if call.ok:
            return call
        if call.first_token is not None:
            break  # failed after part of its answer was shown
    answered = count(sum(c.ok for c in run.layer_calls(layer - 1)), "proposal")
    raise MoaRunError(
        failure_message(f"The aggregator failed after {answered} had been answered", tried)
    )


def make_call(
    plan: Plan,
    run: Run,
    member: Member,
    layer: int,
    index: int,
    request: Request,
    stream: bool = False,
) -> Call:
    "A call, recorded in the run; ``--schema`` goes to the models that support it."
    schema = plan.schema if member.model.supports_schema else None
    call = Call(member, request, layer, index, schema=schema, stream=stream)
    run.calls.append(call)
    return call


def failure_message(head: str, failed: list[Call]) -> str:
    lines = [
        f"  {call.member.model_id} ({call.role} {call.index + 1}): {call.error or call.status}"
        for call in failed
    ]
    return "\n".join([f"{head}:", *lines])
