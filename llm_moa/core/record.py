"""What a run did: one ``Call`` per model call, and the ``Run`` stored in ``turns.response_json``.

Nothing secret is ever recorded: options whose names are credentials are
redacted, and error messages are scrubbed of the user's stored keys, of
credential-looking environment values and of anything shaped like a key,
before they are cut to length.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..text import shorten, visible

OK, FAILED, TIMEOUT, SKIPPED, CANCELLED = "ok", "failed", "timeout", "skipped", "cancelled"
WAITING, RUNNING = "waiting", "running"

# Option and variable names that hold credentials (max_tokens is not one).
SECRET_NAME = re.compile(
    r"api_?key|(^|[_-])key$|secret|passw|auth|credential|bearer|(^|[_-])token$", re.I
)
REDACTED = "[REDACTED]"
_KEY_SHAPES = [  # (pattern, replacement)
    (re.compile(r"\b(sk|pk|rk|gsk|xai|hf|ghp|gho|AIza)[-_][A-Za-z0-9_\-]{8,}"), REDACTED),
    (re.compile(r"\bAIza[A-Za-z0-9_\-]{20,}"), REDACTED),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-]{8,}"), REDACTED),
    (
        re.compile(  # keeps "key=" and redacts the value
            r"(?i)((?:api[_-]?)?key|token|secret|password|authorization)(\s*[=:]\s*)"
            r"(['\"]?)[A-Za-z0-9._\-/+]{8,}\3"
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"\b[A-Za-z0-9_\-]{40,}\b"), REDACTED),
]
ERROR_LIMIT = 500  # characters of an error message kept, after scrubbing
MAX_KEY_LENGTH = 512  # longer option values are prose: only known secrets are looked for


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
        return _present(
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
                "usage": _present(usage)
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
            "moa": _present(
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


def calls_of(record: dict) -> list[tuple[str, dict]]:
    "Every call of a stored run record (``response_json['moa']``) in order, labelled by layer ('L1', ..., 'agg')."
    proposers = [
        (f"L{layer['layer']}", call)
        for layer in record.get("proposer_layers", [])
        for call in layer.get("proposers", [])
    ]
    return proposers + [
        ("agg", call)
        for call in record.get("aggregator_attempts") or [record.get("aggregator")]
        if call
    ]


def missing_summary(missing: list[Call]) -> str:
    "'gpt-4o: HTTP 429; claude: timed out after 30s'"
    return "; ".join(f"{c.member.model_id}: {c.error or c.status}" for c in missing)


def _present(data: dict) -> dict:
    "``data`` without the entries that are None or {}."
    return {key: value for key, value in data.items() if value is not None and value != {}}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def safe_options(options: dict, secrets: list[str] | None = None) -> dict:
    """Options as recorded: credential-named ones redacted, known secrets removed,
    and key-shaped text scrubbed in values short enough to be a key (a long
    value is prose, such as a prompt: scanning it for shapes cost 0.3 s a layer
    at 64 proposers of 20 KB)."""
    return {
        key: REDACTED
        if SECRET_NAME.search(key)
        else scrub(value, secrets, shapes=len(value) <= MAX_KEY_LENGTH)
        if isinstance(value, str)
        else value
        for key, value in options.items()
    }


def describe_error(exc: BaseException) -> str:
    "One line: the exception's message (or its type), scrubbed, control characters shown, then cut."
    message = " ".join(str(exc).split()) or type(exc).__name__
    return shorten(visible(scrub(message[: ERROR_LIMIT * 20])), ERROR_LIMIT)


def scrub(text: str, secrets: list[str] | None = None, shapes: bool = True) -> str:
    "Replace known secrets and (with ``shapes``) key-shaped strings with [REDACTED]."
    for secret in known_secrets() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    for shape, replacement in _KEY_SHAPES if shapes else ():
        text = shape.sub(replacement, text)
    return text


def known_secrets() -> list[str]:
    "Stored keys and credential-looking environment values, longest first."
    from .. import host

    values = [
        value for name, value in os.environ.items() if SECRET_NAME.search(name)
    ] + host.stored_keys()
    return sorted({value for value in values if len(value) >= 8}, key=len, reverse=True)
