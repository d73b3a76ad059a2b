"""The Mixture-of-Agents algorithm (Wang et al. 2024, arXiv:2406.04692).

Layer 1: every proposer answers the request. Layers 2..L-1: every proposer
answers again, seeing the previous layer's answers as references. Layer L: the
aggregator synthesises the last answers into one reply, streamed to the user.
"""

from __future__ import annotations

import threading
from typing import Iterator

from .calls import Clock, run_calls
from .errors import MoaRunError
from .plan import Member, Plan
from .prompts import REFINE, SYNTHESIZE, Request, with_references
from .record import OK, SKIPPED, Call, Run
from .text import count


def mixture_of_agents(plan: Plan, run: Run, *, clock: Clock, stream: bool = True,
                      stop: threading.Event | None = None) -> Iterator[tuple[str, str]]:
    "Yield the final answer as ``(event_type, chunk)`` pairs."
    config = plan.config
    answers: list[str] = list(plan.given_answers or [])
    asked = plan.proposer_request or plan.request
    for layer in range(1, config.layers if plan.given_answers is None else 1):
        request = asked if layer == 1 else with_references(asked, answers, REFINE)
        calls = [_call(plan, run, m, layer, i, request) for i, m in enumerate(plan.proposers)]
        for _ in run_calls(calls, config, clock=clock, stream=stream, stop=stop):
            pass
        answers = [call.text for call in calls if call.ok]
        _check_quorum(layer, calls, config.min_proposers)
        if config.show_proposals:
            yield from _as_reasoning(layer, calls)
    final = with_references(plan.request, answers, config.aggregator_system or SYNTHESIZE)
    yield from _aggregate(plan, run, final, clock, stream, stop)


def _aggregate(plan: Plan, run: Run, request: Request, clock: Clock, stream: bool,
               stop: threading.Event | None) -> Iterator[tuple[str, str]]:
    "Try each aggregator in turn until one answers; stream its answer."
    layer = plan.config.layers
    for index, member in enumerate(plan.aggregators):
        call = _call(plan, run, member, layer, index, request, stream=True)
        yield from run_calls([call], plan.config, clock=clock, stream=stream, stop=stop)
        if call.ok or call.first_token is not None:
            break  # answered, or failed after part of its answer was shown
    if run.aggregator_calls[-1].ok:
        return
    answered = sum(c.ok for c in run.layer_calls(layer - 1))
    raise MoaRunError(_failure_message(
        f"The aggregator failed after {count(answered, 'proposal')} had been answered",
        [c for c in run.aggregator_calls if not c.ok],
    ))


def _call(plan: Plan, run: Run, member: Member, layer: int, index: int, request: Request,
          stream: bool = False) -> Call:
    schema = plan.schema if member.model.supports_schema else None
    call = Call(member, request, layer, index, schema=schema, stream=stream)
    run.calls.append(call)
    return call


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
    message = _failure_message(head, failed)
    if stopped:
        message += f"\n  ({count(stopped, 'other call')} stopped once the quorum was out of reach)"
    raise MoaRunError(message)


def _failure_message(head: str, failed: list[Call]) -> str:
    lines = [f"{head}:"]
    for call in failed:
        lines.append(f"  {call.member.model_id} ({call.role} {call.index + 1}): {call.error or call.status}")
    return "\n".join(lines)


def _as_reasoning(layer: int, calls: list[Call]) -> Iterator[tuple[str, str]]:
    for call in calls:
        if call.ok:
            yield "reasoning", f"[layer {layer}, proposer {call.index + 1}: {call.member.model_id}]\n{call.text}\n\n"
