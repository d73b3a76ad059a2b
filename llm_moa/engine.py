"""The Mixture-of-Agents algorithm (Wang et al. 2024, arXiv:2406.04692).

Layer 1: every proposer answers the request. Layers 2..L-1: every proposer
answers again, seeing the previous layer's answers as references. Layer L: the
aggregator synthesises the last answers into one reply, streamed to the user
(or another strategy decides: see strategies.py). With ``cascade``, the first
layer asks a few proposers first and the rest only when those disagree.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

from .calls import Clock, run_calls
from .errors import MoaRunError
from .plan import Plan
from .prompts import REFINE, Request, with_references
from .record import OK, SKIPPED, Call, Run
from .strategies import cascade_agreed, decide, failure_message, make_call, synthesize
from .text import count


def mixture_of_agents(plan: Plan, run: Run, *, clock: Clock, stream: bool = True,
                      stop: threading.Event | None = None) -> Iterator[tuple[str, str]]:
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
        first = config.cascade if layer == 1 else None  # cascade: the rest are asked only when the first disagree
        calls = _propose(plan, run, layer, request, 0, first, clock, stream, stop)
        if first:
            if cascade_agreed(plan, run, calls):
                yield from _as_reasoning(layer, calls) if config.show_proposals else ()
                yield "text", calls[0].text
                return
            calls += _propose(plan, run, layer, request, first, None, clock, stream, stop)
        answers = [call.text for call in calls if call.ok]
        _check_quorum(layer, calls, config.min_proposers)
        if config.show_proposals:
            yield from _as_reasoning(layer, calls)
    yield from decide(plan, run, calls, clock=clock, stream=stream, stop=stop)


def _propose(plan: Plan, run: Run, layer: int, request: Request, start: int, end: int | None, clock: Clock,
             stream: bool, stop: threading.Event | None) -> list[Call]:
    """Proposers start..end-1 answer the request. An ``end`` marks a cascade's
    first stage, which hears from all of its proposers; the rest of the layer
    then share its quorum and wait with the answers already in."""
    config = plan.config
    answered = sum(call.ok for call in run.layer_calls(layer))
    if end is not None:
        config = replace(config, wait=None, min_proposers=1)
    elif answered:
        config = replace(config, wait=config.wait and max(1, config.wait - answered),
                         min_proposers=max(1, config.min_proposers - answered))
    calls = [make_call(plan, run, m, layer, i, request) for i, m in enumerate(plan.proposers[start:end], start)]
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
        head = (f"Only {succeeded} of {len(calls)} proposers answered in layer {layer}; "
                f"min_proposers is {quorum}")
    message = failure_message(head, failed)
    if stopped:
        message += f"\n  ({count(stopped, 'other call')} stopped once the quorum was out of reach)"
    raise MoaRunError(message)


def _as_reasoning(layer: int, calls: list[Call]) -> Iterator[tuple[str, str]]:
    for call in calls:
        if call.ok:
            yield "reasoning", f"[layer {layer}, proposer {call.index + 1}: {call.member.model_id}]\n{call.text}\n\n"
