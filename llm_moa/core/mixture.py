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
``cascade`` in the first layer. With tools only the aggregator can act on
them, so it always writes the answer (``plan.fit_tools`` refuses the
strategies that output a proposal). Each run records what decided its answer,
and why, in ``run.decision``.
"""

from __future__ import annotations

import json
import random
import re
import threading
import unicodedata
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..errors import MoaRunError
from ..text import count, shorten
from .calls import Clock, Quorum, run_calls
from .outliers import kept
from .plan import Member, Plan
from .prompts import REFINE, SELECT, SYNTHESIZE, Request, digest_of, with_references
from .record import OK, SKIPPED, Call, Run

Events = Iterator[tuple[str, str]]
Candidate = tuple[int, str]  # (proposer number, its answer)


@dataclass
class Context:
    "What every step of one run shares."

    plan: Plan
    run: Run
    clock: Clock
    stream: bool = True
    stop: threading.Event | None = None
    agreed: bool = False  # a cascade's first proposers agree: nobody else is asked

    def run_calls(self, calls: list[Call], quorum: Quorum) -> Events:
        config = self.plan.config
        return run_calls(
            calls, config, quorum, clock=self.clock, stream=self.stream, stop=self.stop
        )


def mixture_of_agents(
    plan: Plan, run: Run, *, clock: Clock, stream: bool = True, stop: threading.Event | None = None
) -> Events:
    "Yield the final answer as ``(event_type, chunk)`` pairs."
    ctx = Context(plan, run, clock, stream, stop)
    run.decision["aggregate"] = plan.config.aggregate  # always there, whatever decides
    if plan.given_answers is not None:  # a tool round that only the aggregator continues
        answers = list(enumerate(plan.given_answers, 1))
    else:
        answers = yield from proposer_layers(ctx)
    yield from decide(ctx, answers)


def proposer_layers(ctx: Context) -> Generator[tuple[str, str], None, list[Candidate]]:
    """Layers 1..L-1: every proposer answers the request, from layer 2 on with
    the previous layer's answers as references. Returns the last layer's answers."""
    plan = ctx.plan
    answers: list[Candidate] = []
    for layer in range(1, plan.config.layers):
        request = plan.proposer_request
        if layer > 1:
            request = with_references(request, [text for _, text in answers], REFINE)
        calls = propose(ctx, layer, request)
        answers = [(call.index + 1, call.text) for call in kept(plan, ctx.run, calls)]  # outliers
        if plan.config.show_proposals:
            yield from _as_reasoning(layer, calls)
        if ctx.agreed:
            break  # the rest, and any later layer, are not asked
    return answers


def propose(ctx: Context, layer: int, request: Request) -> list[Call]:
    """The proposers answer the request; too few answers end the run. A
    cascade (layer 1) first hears from all of its first proposers; the rest,
    asked only when those do not agree, share the layer's quorum and wait
    with the answers already in."""
    config = ctx.plan.config
    quorum = Quorum(config.min_proposers, config.wait)
    first = config.cascade if layer == 1 else None
    calls = _ask(ctx, layer, request, 0, first, Quorum() if first else quorum)
    if first:
        if cascade_agreed(ctx, calls):
            return calls
        calls += _ask(ctx, layer, request, first, None, quorum.after(sum(c.ok for c in calls)))
    if quorum.missed(calls):
        raise MoaRunError(_quorum_message(layer, calls, quorum.need))
    return calls


def _ask(
    ctx: Context, layer: int, request: Request, start: int, end: int | None, quorum: Quorum
) -> list[Call]:
    "Proposers start..end-1 answer the request."
    members = ctx.plan.proposers[start:end]
    schema = ctx.plan.schema
    calls = [make_call(ctx, m, layer, i, request, schema) for i, m in enumerate(members, start)]
    for _ in ctx.run_calls(calls, quorum):
        pass
    return calls


def _quorum_message(layer: int, calls: list[Call], quorum: int) -> str:
    succeeded = sum(call.ok for call in calls)
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
    return message


def _as_reasoning(layer: int, calls: list[Call]) -> Iterator[tuple[str, str]]:
    for call in calls:
        if call.ok:
            yield (
                "reasoning",
                f"[layer {layer}, proposer {call.index + 1}: {call.member.model_id}]\n{call.text}\n\n",
            )


FINAL_PUNCTUATION = ".!?;:,…。！？"
KEY_LIMIT = 200  # characters of a normalised answer kept in the record


def decide(ctx: Context, candidates: list[Candidate]) -> Events:
    "The answer from the last layer's answers, by the configured strategy."
    plan, run = ctx.plan, ctx.run
    texts = [text for _, text in candidates]
    if ctx.agreed and not plan.request.tools:  # with tools, only the aggregator can act on them
        run.decision.update(
            strategy="cascade",
            reason=f"the first {len(candidates)} of {len(plan.proposers)} proposers agree; "
            "the rest were not asked",
        )
        yield "text", texts[0]
    elif plan.config.skip_if_agree and len(candidates) > 1 and alike(texts, plan.schema):
        run.decision.update(
            strategy="agreement",
            agreement=[n for n, _ in candidates],
            reason=f"all {len(candidates)} answers agree; no aggregator call",
        )
        yield "text", texts[0]
    else:
        strategy = {"vote": vote, "select": select, "synthesize": synthesize}[plan.config.aggregate]
        yield from strategy(ctx, candidates)


# --- when are two answers the same? -------------------------------------------


def same_key(text: str, schema: dict | None = None) -> str:
    """What two answers must share to count as the same: the text with case,
    spacing and final punctuation ignored; with a schema, the parsed JSON
    written canonically (an answer that does not parse falls back to its text).
    Unicode forms are normalised first (NFC): a text typed precomposed or
    decomposed is one text. NFKC would also make ``x²`` and ``x2`` one answer."""
    text = unicodedata.normalize("NFC", text)
    if schema:
        try:
            return json.dumps(
                json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
        except (ValueError, RecursionError):
            pass
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())
    return " ".join(folded.split()).rstrip(FINAL_PUNCTUATION + " ")


def alike(texts: list[str], schema: dict | None) -> bool:
    "Whether all texts are the same answer; answers of nothing (``?``, ``!``) never agree."
    keys = {same_key(text, schema) for text in texts}
    return len(keys) == 1 and "" not in keys


def cascade_agreed(ctx: Context, calls: list[Call]) -> bool:
    "Whether the cascade's first proposers all answered alike (recorded either way)."
    answered = all(call.ok for call in calls)
    ctx.agreed = answered and alike([call.text for call in calls], ctx.plan.schema)
    cascade: dict[str, Any] = {"first": len(calls), "escalated": not ctx.agreed}
    if ctx.agreed:
        ctx.run.decision["agreement"] = [call.index + 1 for call in calls]
    else:
        cascade["why"] = "disagreed" if answered else "did not all answer"
    ctx.run.decision["cascade"] = cascade
    return ctx.agreed


def vote(ctx: Context, candidates: list[Candidate]) -> Events:
    "The most common answer, verbatim as its first proposer wrote it; a tie goes to select."
    schema = ctx.plan.schema
    groups: dict[str | int, list[Candidate]] = {}
    for candidate in candidates:  # an answer of nothing is a group of its own
        groups.setdefault(same_key(candidate[1], schema) or candidate[0], []).append(candidate)
    ranked = sorted(groups.values(), key=lambda group: -len(group))  # stable: first answered first
    ctx.run.decision["votes"] = [
        {
            "answer": shorten(same_key(group[0][1], schema), KEY_LIMIT),
            "count": len(group),
            "proposers": [n for n, _ in group],
        }
        for group in ranked
    ]
    most = len(ranked[0])
    leaders = [group[0] for group in ranked if len(group) == most]
    if len(leaders) > 1:
        ctx.run.decision["tie"] = [n for n, _ in leaders]
        yield from select(ctx, leaders)
        return
    ctx.run.decision.update(
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


def select(ctx: Context, candidates: list[Candidate]) -> Events:
    "The candidate the aggregator picks, output verbatim; unparseable: the first one shown."
    shown = list(candidates)
    random.Random(digest_of([text for _, text in shown]).digest()).shuffle(shown)  # see above
    # the judge only picks: it gets no tools, so it cannot act instead of choosing,
    # and no --schema, as its reply is a choice, not the answer
    request = with_references(ctx.plan.request, [text for _, text in shown], SELECT)
    call = yield from ask_aggregator(ctx, replace(request, tools=()), schema=None, show=False)
    choice, parsed = parse_choice(call.text, [text for _, text in shown], ctx.plan.schema)
    picked = shown[(choice or 1) - 1]
    how = (
        f"the aggregator chose candidate {choice} ({parsed})"
        if choice
        else "the aggregator's choice could not be read; fell back to the first candidate shown"
    )
    ctx.run.decision.update(
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
    """The 1-based number of the chosen candidate and how it was read. A reply
    that repeats exactly one candidate means that candidate, whatever it looks
    like (a reply ``43`` among ``42`` and ``43`` is the second, not a number out
    of range); else, most explicit first: "CHOICE: n", "[[n]]", "Answer n", or
    a last line that is a bare number. ``(None, "unparseable")`` else."""
    keys = [same_key(text, schema) for text in shown]
    said = same_key(reply, schema)
    if said and keys.count(said) == 1:
        return keys.index(said) + 1, "same text"
    # every kind of line break as "\n" (for the last pattern), and each run of spaces as one:
    # a reply of thousands of spaces after "choice" made the patterns backtrack for seconds
    lines = "\n".join(" ".join(line.split()) for line in reply.splitlines())
    for how, pattern in _CHOICES:
        found = pattern.findall(lines)
        if found:
            number = int(found[-1])
            return (number, how) if 1 <= number <= len(shown) else (None, "out of range")
    return None, "unparseable"


# --- synthesize ----------------------------------------------------------------


def synthesize(ctx: Context, candidates: list[Candidate]) -> Events:
    """The aggregator writes the answer. With a window, step 1 reads the first
    N answers and each next step its running synthesis plus the next N-1;
    only the last step streams. A step that calls tools ends the turn there:
    llm runs them, and the tool round starts the window over with the results."""
    plan = ctx.plan
    size = plan.config.window or len(candidates)
    pending = [(f"proposer {n}", text) for n, text in candidates]
    references, pending = pending[:size], pending[size:]
    offered = {tool.name for tool in plan.request.tools}
    steps: list[dict] = []
    while True:
        instruction = plan.config.aggregator_system or SYNTHESIZE
        request = with_references(plan.request, [text for _, text in references], instruction)
        call = yield from ask_aggregator(ctx, request, schema=plan.schema, show=not pending)
        steps.append(
            {
                "step": len(steps) + 1,
                "references": [label for label, _ in references],
                "model": call.member.model_id,
            }
        )
        if pending and any(part.name in offered for part in call.tool_calls):
            if call.text:  # not streamed, as it was not to be the last step
                yield "text", call.text
            break
        if not pending:
            break
        references, pending = (
            [(f"synthesis {len(steps)}", call.text), *pending[: size - 1]],
            pending[size - 1 :],
        )
    facts: dict[str, Any] = {
        "reason": f"the aggregator synthesised {count(len(candidates), 'answer')}"
    }
    if plan.config.window:
        made = sum(c.attempts > 0 for c in ctx.run.aggregator_calls)
        facts.update(windows=steps, aggregator_calls=made)
        facts["reason"] += f" in {count(len(steps), 'step')} of at most {plan.config.window}"
        if pending:
            facts["reason"] += f"; step {len(steps)} called tools, and the tool round starts over"
    ctx.run.decision.update(strategy="synthesize", **facts)


# --- calling the aggregator ----------------------------------------------------


def ask_aggregator(
    ctx: Context, request: Request, *, schema: dict | None, show: bool = True
) -> Generator[tuple[str, str], None, Call]:
    "Try each aggregator in turn until one answers; its chunks are passed on when ``show``."
    plan, layer = ctx.plan, ctx.plan.config.layers
    tried = []
    for index, member in enumerate(plan.aggregators):
        call = make_call(ctx, member, layer, index, request, schema, stream=show)
        tried.append(call)
        yield from ctx.run_calls([call], Quorum())
        if call.ok:
            return call
        if call.first_token is not None:
            break  # failed after part of its answer was shown
    given = plan.given_answers  # a tool round reads an earlier run's proposals
    n = len(given) if given is not None else sum(c.ok for c in ctx.run.layer_calls(layer - 1))
    answered = count(n, "proposal")
    raise MoaRunError(
        failure_message(f"The aggregator failed after {answered} had been answered", tried)
    )


def make_call(
    ctx: Context,
    member: Member,
    layer: int,
    index: int,
    request: Request,
    schema: dict | None,
    stream: bool = False,
) -> Call:
    "A call, recorded in the run; ``--schema`` goes to the models that support it."
    schema = schema if member.model.supports_schema else None
    call = Call(member, request, layer, index, schema=schema, stream=stream)
    ctx.run.calls.append(call)
    return call


def failure_message(head: str, failed: list[Call]) -> str:
    lines = [
        f"  {call.member.model_id} ({call.role} {call.index + 1}): {call.error or call.status}"
        for call in failed
    ]
    return "\n".join([f"{head}:", *lines])
