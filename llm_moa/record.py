"""One record per call, and the run record stored in ``turns.response_json``.

Nothing secret is ever recorded: options whose names look like credentials are
redacted, and error messages are scrubbed of the user's stored keys, of
credential-looking environment values and of anything shaped like a key.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

OK, FAILED, TIMEOUT, SKIPPED, CANCELLED = "ok", "failed", "timeout", "skipped", "cancelled"
WAITING, RUNNING = "waiting", "running"

_SECRET_NAME = re.compile(r"key|token|secret|passw|auth|credential", re.I)
_KEY_SHAPES = [
    re.compile(r"\b(sk|pk|rk|gsk|xai|hf|ghp|gho|AIza)[-_][A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bAIza[A-Za-z0-9_\-]{20,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-]{8,}"),
    re.compile(
        r"(?i)((?:api[_-]?)?key|token|secret|password|authorization)(\s*[=:]\s*)"
        r"(['\"]?)[A-Za-z0-9._\-/+]{8,}\3"
    ),
    re.compile(r"\b[A-Za-z0-9_\-]{40,}\b"),
]
REDACTED = "[REDACTED]"


@dataclass
class CallRecord:
    role: str  # "proposer" or "aggregator"
    layer: int  # 1-based; the aggregator's layer is the last
    index: int  # position among the layer's proposers (or aggregator fallbacks)
    model: str  # as the user named it
    model_id: str
    options: dict = field(default_factory=dict)  # as recorded: already made safe
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

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    def to_json(self) -> dict[str, Any]:
        data = {
            "model": self.model_id,
            "requested": self.model if self.model != self.model_id else None,
            "resolved_model": self.resolved_model,
            "options": self.options,
            "status": self.status,
            "text": self.text,
            "error": self.error,
            "attempts": self.attempts,
            "started_ms": _ms(self.started),
            "first_token_ms": _ms(self.first_token),
            "ended_ms": _ms(self.ended),
            "duration_ms": _ms(self.duration),
            "usage": {
                key: value
                for key, value in (
                    ("input", self.input_tokens),
                    ("output", self.output_tokens),
                    ("details", self.token_details),
                )
                if value is not None
            },
        }
        return {key: value for key, value in data.items() if value not in (None, {})}


@dataclass
class RunRecord:
    moa_model: str
    layers: int
    calls: list[CallRecord] = field(default_factory=list)
    wall: float | None = None
    error: str | None = None

    def layer_calls(self, layer: int) -> list[CallRecord]:
        return [c for c in self.calls if c.layer == layer and c.role == "proposer"]

    @property
    def aggregator_calls(self) -> list[CallRecord]:
        return [c for c in self.calls if c.role == "aggregator"]

    @property
    def made_calls(self) -> list[CallRecord]:
        "Calls that reached a model (not skipped before starting)."
        return [c for c in self.calls if c.attempts > 0]

    def usage(self) -> tuple[int | None, int | None, dict]:
        """Totals over every call, and a per-model breakdown for ``details``."""
        total_in = total_out = None
        by_model: dict[str, dict[str, int]] = {}
        for call in self.made_calls:
            entry = by_model.setdefault(call.model_id, {"calls": 0})
            entry["calls"] += 1
            if call.input_tokens is not None:
                total_in = (total_in or 0) + call.input_tokens
                entry["input"] = entry.get("input", 0) + call.input_tokens
            if call.output_tokens is not None:
                total_out = (total_out or 0) + call.output_tokens
                entry["output"] = entry.get("output", 0) + call.output_tokens
        details = {"moa_calls": len(self.made_calls), "moa_models": by_model}
        return total_in, total_out, details

    def to_json(self) -> dict[str, Any]:
        aggregators = [c.to_json() for c in self.aggregator_calls]
        used = next((a for a in aggregators if a["status"] == OK), None)
        data = {
            "moa": {
                "version": 1,
                "model": self.moa_model,
                "layers": self.layers,
                "calls": len(self.made_calls),
                "wall_ms": _ms(self.wall),
                "error": self.error,
                "proposer_layers": [
                    {"layer": n, "proposers": [c.to_json() for c in self.layer_calls(n)]}
                    for n in range(1, self.layers)
                ],
                "aggregator": used or (aggregators[-1] if aggregators else None),
                "aggregator_attempts": aggregators if len(aggregators) > 1 else None,
            }
        }
        data["moa"] = {k: v for k, v in data["moa"].items() if v is not None}
        return data


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


def safe_options(options: dict, secrets: list[str] | None = None) -> dict:
    "Options as recorded: credential-named ones redacted, key-shaped text scrubbed."
    return {
        key: REDACTED if _SECRET_NAME.search(key) else scrub(value, secrets) if isinstance(value, str) else value
        for key, value in options.items()
    }


MAX_KEY_LENGTH = 512  # longer text is prose, not a key: only known secrets are looked for


def describe_error(exc: BaseException) -> str:
    "One scrubbed line: the exception's message, or its type if it has none."
    message = " ".join(str(exc).split()) or type(exc).__name__
    if len(message) > 500:
        message = message[:497] + "..."
    return scrub(message)


def scrub(text: str, secrets: list[str] | None = None) -> str:
    "Replace known secrets and, in text short enough to be a key, key-shaped strings."
    for secret in known_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if len(text) <= MAX_KEY_LENGTH:
        for shape in _KEY_SHAPES:
            text = shape.sub(_redact_match, text)
    return text


def _redact_match(match: re.Match) -> str:
    if match.re.groups >= 3:  # keep "key=" and redact the value
        return f"{match.group(1)}{match.group(2)}{REDACTED}"
    return REDACTED


_secrets_cache: dict[tuple, list[str]] = {}


def known_secrets() -> list[str]:
    "Stored keys and credential-looking environment values, longest first."
    import llm

    path = llm.user_dir() / "keys.json"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None
    env = tuple(sorted(v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8))
    key = (str(path), stamp, env)
    if key not in _secrets_cache:
        _secrets_cache.clear()
        secrets = set(env)
        try:
            if stamp is not None:
                for value in json.loads(path.read_text()).values():
                    if isinstance(value, str) and len(value) >= 8:
                        secrets.add(value)
        except Exception:  # an unreadable keys file must not break error reporting
            pass
        _secrets_cache[key] = sorted(secrets, key=len, reverse=True)
    return _secrets_cache[key]
