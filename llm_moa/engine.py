"""The Mixture-of-Agents algorithm (Wang et al. 2024, arXiv:2406.04692).

Layer 1: every proposer answers the request. Layers 2..L-1: every proposer
answers again, seeing the previous layer's answers as references. Layer L: the
aggregator synthesises the last answers into one reply, streamed to the user.
"""

from __future__ import annotations

import threading
from typing import Iterator

import llm

from .calls import Call, Clock, run_calls
from .plan import Member, Plan
from .prompts import REFINE, SYNTHESIZE, Request, with_references
from .record import OK, SKIPPED, CallRecord, RunRecord


class MoaRunError(llm.ModelError):
    "A run that could not produce an answer; one line per failed call."


def run_moa(
    plan: Plan,
    run: RunRecord,
    *,
    clock: Clock,
    stop: threading.Event | None = None,
) -> Iterator[tuple[str, str]]:
    "Yield the final answer as ``(event_type, chunk)`` pairs."
    config = plan.config
    common = dict(clock=clock, timeout=config.timeout, retries=config.retries,
                  concurrency=config.max_concurrency, stop=stop)
    answers: list[str] = []
    for layer in range(1, config.layers):
        request = plan.request if layer == 1 else with_references(plan.request, answers, REFINE)
        calls = [_call(plan, run, m, "proposer", layer, i, request) for i, m in enumerate(plan.proposers)]
        for _ in run_calls(calls, need=config.wait, quorum=config.min_proposers, **common):
            pass
        answers = [call.record.text for call in calls if call.record.ok]
        _check_quorum(layer, [call.record for call in calls], config.min_proposers)
        if config.show_proposals:
            yield from _as_reasoning(layer, [call.record for call in calls])
    final = with_references(plan.request, answers, config.aggregator_system or SYNTHESIZE)
    yield from _aggregate(plan, run, final, common)


def _aggregate(plan: Plan, run: RunRecord, request: Request, common: dict) -> Iterator[tuple[str, str]]:
    "Try each aggregator in turn until one answers; stream its answer."
    layer = plan.config.layers
    for index, member in enumerate(plan.aggregators):
        call = _call(plan, run, member, "aggregator", layer, index, request, stream=True)
        yield from run_calls([call], **common)
        if call.record.ok or call.record.first_token is not None:
            break  # answered, or failed after part of its answer was shown
    if run.aggregator_calls[-1].ok:
        return
    answered = sum(c.ok for c in run.layer_calls(layer - 1))
    raise MoaRunError(_failure_message(
        f"The aggregator failed after {_count(answered, 'proposal')} had been answered",
        [c for c in run.aggregator_calls if not c.ok],
    ))


def _call(plan: Plan, run: RunRecord, member: Member, role: str, layer: int, index: int,
          request: Request, stream: bool = False) -> Call:
    record = CallRecord(role, layer, index, member.name, member.model_id, member.recorded_options)
    run.calls.append(record)
    schema = plan.schema if member.model.supports_schema else None
    return Call(member, request, record, schema=schema, stream=stream)


def _check_quorum(layer: int, records: list[CallRecord], quorum: int) -> None:
    succeeded = sum(record.ok for record in records)
    if succeeded >= quorum:
        return
    failed = [record for record in records if record.status not in (OK, SKIPPED)]
    stopped = len(records) - succeeded - len(failed)
    if succeeded == 0 and not stopped:
        head = f"No proposer answered in layer {layer} ({_count(len(records), 'call')} failed)"
    else:
        head = (f"Only {succeeded} of {len(records)} proposers answered in layer {layer}; "
                f"min_proposers is {quorum}")
    message = _failure_message(head, failed)
    if stopped:
        message += f"\n  ({_count(stopped, 'other call')} stopped once the quorum was out of reach)"
    raise MoaRunError(message)


def _failure_message(head: str, failed: list[CallRecord]) -> str:
    lines = [f"{head}:"]
    for record in failed:
        lines.append(f"  {record.model_id} ({record.role} {record.index + 1}): "
                     f"{record.error or record.status}")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _as_reasoning(layer: int, records: list[CallRecord]) -> Iterator[tuple[str, str]]:
    for record in records:
        if record.ok:
            yield "reasoning", f"[layer {layer}, proposer {record.index + 1}: {record.model_id}]\n{record.text}\n\n"
