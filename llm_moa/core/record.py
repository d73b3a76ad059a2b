"""What a run did: one ``Call`` per model call, and the ``Run`` stored in ``turns.response_json``.

The record is written here (``Run.to_json``) and read back here: ``StoredRun``
is that JSON as a typed model, for every reader to parse once (``llm moa show``
and ``runs``, unfinished runs, costs, the eval, a tool loop's reused proposals),
so a record edited out of shape is one error naming what is wrong
(``StoredRun.parse``), or no record (``StoredRun.of``), never a crash deep
inside a reader. Nothing secret is recorded (``redact.py``).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import MoaError, parse
from ..text import shorten, visible
from .redact import known_secrets, safe_options, scrub

OK, FAILED, TIMEOUT, SKIPPED, CANCELLED = "ok", "failed", "timeout", "skipped", "cancelled"
WAITING, RUNNING = "waiting", "running"

ERROR_LIMIT = 500  # characters of an error message kept, after scrubbing


@dataclass(eq=False)
class Call:
    "One call to one model: what to ask it, and what happened."

    member: Any  # plan.Member
    request: Any  # prompts.Request
    layer: int  # 1-based; the aggregator's layer is the last
    index: int  # position among the layer's proposers (or aggregator fallbacks)
    schema: dict | None = None
    stream: bool = False  # forward chunks to the caller (the aggregator)
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None
    status: str = WAITING
    text: str = ""
    error: str | None = None
    attempts: int = 0
    started: float | None = None  # seconds since the run started
    first_token: float | None = None
    ended: float | None = None
    resolved_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    token_details: dict | None = None
    truncated: bool = False  # the stream ended without the provider saying it had finished
    tool_calls: list = field(
        default_factory=list
    )  # llm.parts.ToolCallPart asked for by the aggregator

    @property
    def role(self) -> str:
        return self.member.role

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def usage_known(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None

    def to_json(self, secrets: list[str]) -> dict[str, Any]:
        member = self.member
        usage = {
            "input": self.input_tokens,
            "output": self.output_tokens,
            "details": self.token_details,
        }
        return _without_empty(
            {
                "model": member.model_id,
                "requested": member.name if member.name != member.model_id else None,
                "resolved_model": self.resolved_model,
                "options": safe_options(member.options, secrets),
                "status": self.status,
                "text": self.text,
                "error": self.error,
                "truncated": self.truncated or None,
                "tool_calls": [
                    {"name": c.name, "arguments": c.arguments, "tool_call_id": c.tool_call_id}
                    for c in self.tool_calls
                ]
                or None,
                "attempts": self.attempts,
                "started_ms": _ms(self.started),
                "first_token_ms": _ms(self.first_token),
                "ended_ms": _ms(self.ended),
                "duration_ms": None
                if self.started is None or self.ended is None
                else _ms(self.ended - self.started),
                "usage": _without_empty(usage)
                if self.usage_known
                else ("unknown" if self.attempts and self.ok else None),
            }
        )


@dataclass
class Run:
    "One MoA run, as stored under ``moa`` in the turn's response_json."

    moa_model: str
    layers: int
    calls: list[Call] = field(default_factory=list)
    wall: float | None = None
    error: str | None = None
    tools: dict | None = None  # what tools.fit_tools did: tools offered, results, proposals reused
    decision: dict = field(default_factory=dict)  # what decided the answer, and why (strategies.py)

    def layer_calls(self, layer: int) -> list[Call]:
        return [c for c in list(self.calls) if c.layer == layer and c.role == "proposer"]

    @property
    def aggregator_calls(self) -> list[Call]:
        return [c for c in list(self.calls) if c.role == "aggregator"]

    @property
    def made_calls(self) -> list[Call]:
        "Calls that reached a model (not skipped before starting)."
        return [c for c in list(self.calls) if c.attempts > 0]

    def missing(self) -> list[Call]:
        "Proposers of the last proposer layer that did not answer (the run is partial)."
        return [c for c in self.layer_calls(self.layers - 1) if not c.ok]

    def usage(self) -> tuple[int | None, int | None, dict]:
        """Totals over every call whose usage was reported, and a per-model
        breakdown for ``details``; calls whose provider reported no usage are
        named under ``usage_unknown``, so a total is never taken for complete."""
        by_model: dict[str, dict[str, int]] = {}
        for call in self.made_calls:
            entry = by_model.setdefault(call.member.model_id, {"calls": 0})
            entry["calls"] += 1
            for key, tokens in (("input", call.input_tokens), ("output", call.output_tokens)):
                if tokens is not None:
                    entry[key] = entry.get(key, 0) + tokens
        details: dict[str, Any] = {"moa_calls": len(self.made_calls), "moa_models": by_model}
        unknown = Counter(
            call.member.model_id for call in self.made_calls if call.ok and not call.usage_known
        )
        if unknown:
            details["usage_unknown"] = {
                model: f"{n} of {by_model[model]['calls']} calls" for model, n in unknown.items()
            }

        def total(key: str) -> int | None:
            counts = [entry[key] for entry in by_model.values() if key in entry]
            return sum(counts) if counts else None

        return total("input"), total("output"), details

    def to_json(self) -> dict[str, Any]:
        secrets = known_secrets()
        aggregators = [c.to_json(secrets) for c in self.aggregator_calls]
        used = next(
            (a for a in reversed(aggregators) if a["status"] == OK), None
        )  # a window's last step
        missing = self.missing() if used or "strategy" in self.decision else []
        return {
            "moa": _without_empty(
                {
                    "version": 1,
                    "model": self.moa_model,
                    "layers": self.layers,
                    "calls": len(self.made_calls),
                    "wall_ms": _ms(self.wall),
                    "error": self.error,
                    "partial": missing_summary(missing) if missing else None,
                    "proposer_layers": [
                        {"layer": n, "proposers": [c.to_json(secrets) for c in self.layer_calls(n)]}
                        for n in range(1, self.layers)
                    ],
                    "aggregator": used or (aggregators[-1] if aggregators else None),
                    "aggregator_attempts": aggregators if len(aggregators) > 1 else None,
                    "tools": self.tools,
                    "decision": self.decision,
                }
            )
        }


# --- the record as it is read back ------------------------------------------

MAX_MS = 10**12  # about 30 years: a longer time was edited in by hand
Ms = Annotated[int, Field(ge=0, le=MAX_MS)]
Count = Annotated[int, Field(ge=0, le=10**12)]


class _Stored(BaseModel):
    """Fields a newer version adds are kept, not refused; a missing optional
    field has its default. Built when first read, so a run never pays for it."""

    model_config = ConfigDict(extra="allow", defer_build=True)


class StoredToolCall(_Stored):
    name: str
    arguments: Any = None
    tool_call_id: str | None = None


class StoredUsage(_Stored):
    input: Count | None = None
    output: Count | None = None
    details: dict | None = None


class StoredCall(_Stored):
    "One call as ``Call.to_json`` wrote it."

    model: str
    requested: str | None = None
    resolved_model: str | None = None
    options: dict = {}
    status: str
    text: str = ""
    error: str | None = None
    truncated: bool = False
    tool_calls: list[StoredToolCall] = []
    attempts: Count = 0
    started_ms: Ms | None = None
    first_token_ms: Ms | None = None
    ended_ms: Ms | None = None
    duration_ms: Ms | None = None
    usage: StoredUsage | Literal["unknown"] | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK


class StoredLayer(_Stored):
    layer: Annotated[int, Field(ge=1)]
    proposers: list[StoredCall] = []


class StoredTools(_Stored):
    "What a run with tools (-T) was offered, got back, and whose proposals it reused."

    offered: list[str] = []
    tool_results: Count | None = None
    tool_turns: str | None = None
    proposals_from: str | None = None


class StoredVote(_Stored):
    answer: str
    count: Count
    proposers: list[int]


class StoredWindow(_Stored):
    step: Count
    references: list[str]
    model: str | None = None


class StoredCascade(_Stored):
    first: Count
    escalated: bool
    why: str | None = None


class StoredOutlierCheck(_Stored):
    "One layer's check under ``-o outliers drop`` (outliers.py writes it)."

    layer: Count
    left_out: list[int] = []
    similarity: dict[str, float] = {}
    reason: str = ""


class StoredDecision(_Stored):
    "What decided the answer, and why (mixture.py writes it)."

    aggregate: str | None = None
    strategy: str | None = None
    reason: str | None = None
    cascade: StoredCascade | None = None
    votes: list[StoredVote] = []
    tie: list[int] = []
    shown_order: list[int] = []
    agreement: list[int] = []
    windows: list[StoredWindow] = []
    outliers: list[StoredOutlierCheck] = []


class StoredRun(_Stored):
    "A run record (``response_json['moa']``) as every reader sees it."

    version: int = 1
    model: str = ""
    layers: Annotated[int, Field(ge=1)] = 2
    calls: Count = 0
    wall_ms: Ms | None = None
    error: str | None = None
    partial: str | None = None
    proposer_layers: list[StoredLayer] = []
    aggregator: StoredCall | None = None
    aggregator_attempts: list[StoredCall] | None = None
    tools: StoredTools | None = None
    decision: StoredDecision = Field(default_factory=StoredDecision)

    @classmethod
    def parse(cls, data: Any, where: str = "run record") -> StoredRun:
        "The record, or a one-line ``MoaError``: 'WHERE: proposer_layers.0.text is not text'."
        return parse(cls, data, lambda problem: f"{where}: {problem}")

    @classmethod
    def of(cls, response_json: Any) -> StoredRun | None:
        """The record in a response's ``response_json``, or None: not a MoA
        run's, or out of shape (for readers that carry on without it; one that
        must say what is wrong uses ``parse``)."""
        data = response_json.get("moa") if isinstance(response_json, dict) else None
        try:
            return cls.parse(data) if isinstance(data, dict) else None
        except MoaError:
            return None

    def labelled_calls(self) -> list[tuple[str, StoredCall]]:
        "Every call in order, labelled by layer ('L1', ..., 'agg')."
        proposers = [
            (f"L{layer.layer}", c) for layer in self.proposer_layers for c in layer.proposers
        ]
        aggregators = self.aggregator_attempts or ([self.aggregator] if self.aggregator else [])
        return proposers + [("agg", call) for call in aggregators]

    def answered_proposals(self, read: bool = False) -> list[StoredCall]:
        """The successful proposals of the last proposer layer that has any (what a
        rerun can reuse); with ``read``, only those the next model read (not left
        out by ``-o outliers drop``)."""
        left_out = (
            {(c.layer, n) for c in self.decision.outliers for n in c.left_out} if read else set()
        )
        for layer in reversed(self.proposer_layers):
            answered = [
                call
                for n, call in enumerate(layer.proposers, 1)
                if call.ok and (layer.layer, n) not in left_out
            ]
            if answered:
                return answered
        return []


def missing_summary(missing: list[Call]) -> str:
    "'gpt-4o: HTTP 429; claude: timed out after 30s'"
    return "; ".join(f"{c.member.model_id}: {c.error or c.status}" for c in missing)


def _without_empty(data: dict) -> dict:
    "``data`` without the entries that are None or {}."
    return {key: value for key, value in data.items() if value is not None and value != {}}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def describe_error(exc: BaseException) -> str:
    "One line: the exception's message (or its type), scrubbed, control characters shown, then cut."
    message = " ".join(str(exc).split()) or type(exc).__name__
    return shorten(visible(scrub(message[: ERROR_LIMIT * 20])), ERROR_LIMIT)
