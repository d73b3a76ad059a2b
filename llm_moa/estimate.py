"""What a prompt will make and likely cost, before anything is paid for.

The calls come from the engine itself: ``rehearse`` runs ``mixture_of_agents``
on the real plan with stand-ins in place of the models, which answer at once
with text of the expected length and never call anything. So a plan cannot
drift from a run: same layers, same strategies, same request texts (built by
core/prompts.py). It is rehearsed twice: once with every answer alike (the
fewest calls: a cascade that agrees, a vote without a tie, ``skip_if_agree``)
and once with every answer different (the most); a call of the second that
the first does not make is conditional.

Tokens are counted from text as characters / 4 (``CHARS_PER_TOKEN``), the
usual rule of thumb for English with OpenAI-style tokenizers; no model's own
tokenizer is used. A model's output comes from, in order: the user's own
history (the median output tokens of its newest logged answers, at least
``HISTORY_ROWS`` of them), its ``max_tokens`` (an upper bound only), else it
is unknown. Totals missing a price or an output are lower bounds, as costs are.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from . import host
from .core.calls import Clock
from .core.mixture import mixture_of_agents
from .core.plan import Member, Plan
from .core.prompts import Request
from .core.record import Run
from .prices import Prices, format_cost, format_usd

CHARS_PER_TOKEN = 4
HISTORY_ROWS = 3  # the fewest logged answers of a model that make a history
HISTORY_LIMIT = 50  # the newest answers read


def tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Output:
    "How many tokens a model is expected to write, and where that figure comes from."

    expected: int | None  # None: not known
    low: int = 0
    high: int | None = None  # an upper bound, when one is known
    source: str = "unknown: no logged answers, no max_tokens"

    def text(self) -> str:
        if self.expected is not None:
            spread = f", {self.low:,}-{self.high:,}" if self.low != self.high else ""
            return f"~{self.expected:,} ({self.source}{spread})"
        return f"<= {self.high:,} ({self.source})" if self.high else "unknown"


def expected_output(model_id: str, options: dict) -> Output:
    "The model's output tokens: from the user's history, else its max_tokens, else unknown."
    history = host.output_tokens(model_id, HISTORY_LIMIT)
    if len(history) >= HISTORY_ROWS:
        return Output(
            round(statistics.median(history)),
            min(history),
            max(history),
            f"median of your last {len(history)} logged answers",
        )
    limit = options.get("max_tokens")
    if type(limit) is int and limit > 0:
        return Output(None, 0, limit, "max_tokens")
    return Output(None)


@dataclass
class Planned:
    "One call a prompt would make, with its estimate."

    layer: int
    role: str  # "proposer" or "aggregator"
    index: int  # among the layer's proposers, or the aggregators (1 and up: fallbacks)
    member: Member
    request: Request
    condition: str | None = None  # None: always made
    input_tokens: int = 0
    input_floor: bool = False  # it reads answers of unknown length: a lower bound
    output: Output = field(default_factory=lambda: Output(None))
    price: Any = None  # prices.Price, or None: unpriced

    @property
    def counted(self) -> bool:
        "Fallbacks are made only when an aggregator fails: not in the totals."
        return not (self.role == "aggregator" and self.index and self.condition)

    def usd(self, output: int | None) -> float | None:
        if self.price is None or output is None:
            return None
        return self.price.cost(self.input_tokens, output)


class _StandIn:
    "A model's stand-in in a rehearsal: its capabilities, and an instant answer instead of a call."

    def __init__(self, model: Any, answer: Callable[[], str]):
        self._model, self._answer = model, answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def prompt(self, text: str, **kwargs: Any) -> Any:
        return _Reply(self._answer())


@dataclass
class _Event:
    chunk: str
    type: str = "text"


@dataclass
class _Reply:
    text: str
    resolved_model: None = None
    input_tokens: None = None
    output_tokens: None = None
    token_details: None = None
    response_json: None = None

    def stream_events(self) -> Iterator[_Event]:
        yield _Event(self.text)

    def messages(self) -> list:
        return []  # no tool calls


UNKNOWN_HEAD = "(an answer of unknown length"  # marks a stand-in's answer whose length is unknown
UNKNOWN = UNKNOWN_HEAD + " {})"


def rehearse(plan: Plan, outputs: dict[int, Output], alike: bool) -> list[Any]:
    """The calls a run of ``plan`` makes, in order (``core.record.Call``), with
    every answer alike or every answer different; answers are as long as each
    member's expected output (``outputs`` by ``id(member)``), or a short
    marked text when that is unknown."""
    numbers = itertools.count(1)

    def answer_of(size: int | None) -> Callable[[], str]:
        def answer() -> str:
            if alike:
                return "the same answer"
            n = next(numbers)
            head = f"answer {n}: "
            return UNKNOWN.format(n) if size is None else head + "x" * max(0, size * 4 - len(head))

        return answer

    def stand_in(member: Member) -> Member:
        size = outputs[id(member)].expected
        return replace(member, model=_StandIn(member.model, answer_of(size)))

    dry = replace(
        plan,
        proposers=[stand_in(m) for m in plan.proposers],
        aggregators=[stand_in(m) for m in plan.aggregators],
    )
    run = Run("plan", plan.config.layers)
    for _ in mixture_of_agents(dry, run, clock=Clock(), stream=False):
        pass
    return [call for call in run.calls if call.started is not None]


def plan_calls(plan: Plan, prices: Prices | None) -> list[Planned]:
    "Every call the plan may make, each with its condition and its estimate."
    members = plan.proposers + plan.aggregators
    outputs = {id(m): expected_output(m.model_id, m.options) for m in members}
    fewest = {_key(call, n) for n, call in _numbered(rehearse(plan, outputs, alike=True))}
    calls = []
    for n, call in _numbered(rehearse(plan, outputs, alike=False)):
        original = (plan.proposers if call.role == "proposer" else plan.aggregators)[call.index]
        condition = None if _key(call, n) in fewest else _condition(plan, call.role)
        calls.append(Planned(call.layer, call.role, call.index, original, call.request, condition))
    last = next((c for c in reversed(calls) if c.role == "aggregator"), None)
    for index, member in enumerate(plan.aggregators[1:], 1) if last else ():
        calls.append(
            Planned(
                last.layer,
                "aggregator",
                index,
                member,
                last.request,
                "only if the aggregator before it fails before writing anything",
            )
        )
    return [estimated(call, outputs[id(call.member)], prices) for call in calls]


def estimated(call: Planned, output: Output, prices: Prices | None) -> Planned:
    "The call with its input counted from the request it gets, its output and its price."
    request = call.request
    parts = [request.system, request.text] + [p.text for m in request.history for p in m.parts]
    text = "\n".join(part for part in parts if part)
    call.input_tokens = tokens(text)
    call.input_floor = UNKNOWN_HEAD in text
    call.output = output
    call.price = prices.price(call.member.model_id) if prices else None
    return call


def _numbered(calls: list[Any]) -> Iterator[tuple[int, Any]]:
    "Each call with how many calls of the same layer, role and index came before it (window steps)."
    seen: dict[tuple, int] = {}
    for call in calls:
        key = (call.layer, call.role, call.index)
        seen[key] = seen.get(key, 0) + 1
        yield seen[key], call


def _key(call: Any, n: int) -> tuple:
    return (call.layer, call.role, call.index, n)


def _condition(plan: Plan, role: str) -> str:
    "When a call that not every run makes happens."
    config = plan.config
    why = [f"if the first {config.cascade} disagree"] if config.cascade else []
    if role == "aggregator" and config.aggregate == "vote":
        why.append("only on a tie")
    elif role == "aggregator" and config.skip_if_agree:
        why.append("unless all answers agree")
    return "; ".join(why) or "if the answers differ"


def totals(calls: list[Planned]) -> dict:
    """The estimate over the calls counted: tokens, the expected dollars
    (a lower bound naming what is missing when a price or an output is),
    and the range from the fewest calls at their lowest output to the most
    calls at their highest (none when an upper bound is missing)."""
    counted = [c for c in calls if c.counted]
    missing = list(dict.fromkeys(f"{c.member.model_id} unpriced" for c in counted if not c.price))
    unknown = list(dict.fromkeys(c.member.model_id for c in counted if c.output.expected is None))
    missing += [f"output unknown: {', '.join(unknown)}"] if unknown else []
    expected = sum(c.usd(c.output.expected or 0) or 0.0 for c in counted)
    low = sum(c.usd(c.output.low) or 0.0 for c in counted if c.condition is None)
    highs = [c.usd(c.output.high) for c in counted]
    high = None if None in highs else sum(highs)
    floor = any(c.input_floor for c in counted)
    return {
        "calls": {"fewest": sum(c.condition is None for c in counted), "most": len(counted)},
        "input_tokens": sum(c.input_tokens for c in counted),
        "input_is_lower_bound": floor,
        "output_tokens": sum(c.output.expected or 0 for c in counted),
        "output_is_lower_bound": any(c.output.expected is None for c in counted),
        "usd": round(expected, 10),
        "usd_low": round(low, 10),
        "usd_high": None if high is None or floor else round(high, 10),
        "complete": not missing and not floor,
        "missing": missing + (["answers of unknown length"] if floor else []),
        "text": format_cost(expected, not missing and not floor, missing),
    }


def range_text(total: dict) -> str:
    "'$0.0008 to $0.0031', or what the range lacks."
    if total["usd_high"] is None:
        return "no upper bound (a price, an output's upper bound or an answer's length is unknown)"
    return (
        f"{format_usd(total['usd_low'])} to {format_usd(total['usd_high'])} (the sure calls at "
        "their fewest output tokens, to every call at its most)"
    )


def call_json(call: Planned) -> dict:
    return {
        "input_tokens": call.input_tokens,
        "input_is_lower_bound": call.input_floor,
        "output_tokens": call.output.expected,
        "output_low": call.output.low,
        "output_high": call.output.high,
        "output_source": call.output.source,
        "price": call.price and call.price.to_json(),
        "usd": call.usd(call.output.expected),
        "usd_high": call.usd(call.output.high),
    }
