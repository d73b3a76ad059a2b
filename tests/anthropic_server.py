"""A stand-in for the Anthropic Messages API, as llm-anthropic 0.30 calls it.

llm-anthropic always streams (``client.messages.stream``, even for
``--no-stream``): ``POST /v1/messages`` (``?beta=true`` for beta features)
answered with server-sent events in the SDK's order: ``message_start`` (with
the input usage), ``content_block_start`` / ``content_block_delta`` /
``content_block_stop`` per block, ``message_delta`` (``stop_reason`` and the
output usage), ``message_stop``. A request without ``"stream": true`` gets the
whole message as JSON. Point the plugin here with ``ANTHROPIC_BASE_URL`` and
any key (``ANTHROPIC_API_KEY`` or ``llm keys set anthropic``).

Answers are ``"<model> says: <last user message>"`` (a ``Behaviour``'s
``reply`` instead); a ``tool_call`` behaviour, or a request whose
``tool_choice`` forces a tool (llm-anthropic's ``--schema`` for older models),
answers with a ``tool_use`` block. Errors have Anthropic's JSON body:
``rate_limited`` (429 with ``retry-after``), ``overloaded`` (529), any status
with ``error``. ``dropped(how="eof")`` ends the stream cleanly before
``message_delta``, which the SDK accepts as a complete message.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from stand_in import Behaviour, Handler, Received, StandInServer, answer, word_counts, words

MODELS = ("claude-haiku-4-5-20251001", "claude-3-5-haiku-latest")
ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    404: ("not_found_error", "Not found."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit."),
    500: ("api_error", "Internal server error."),
    529: ("overloaded_error", "Overloaded"),
}


class AnthropicServer(StandInServer):
    name = "anthropic"

    def __init__(self, models: tuple[str, ...] = MODELS):
        super().__init__(models)

    def calls(self, model: str | None = None) -> list[Received]:
        "Messages requests received, for one model or all."
        return [r for r in self.paths("/v1/messages") if model is None or r.model == model]


class _Handler(Handler):
    def do_POST(self) -> None:
        received = self.received()
        number, behaviour = self.owner.record(received)
        if self.path.split("?")[0].rstrip("/") != "/v1/messages":
            self._error(404, Behaviour(status=404, error_message=f"Unknown path {self.path}"))
        elif behaviour.status != 200:
            self._error(behaviour.status, behaviour)
        else:
            self._message(received, number, behaviour)

    def _error(self, status: int, behaviour: Behaviour) -> None:
        kind, message = ERRORS.get(status, ("api_error", f"Error {status}"))
        headers = {"request-id": "req_test"}
        if behaviour.retry_after is not None:  # and in milliseconds, which the SDK reads first
            headers["retry-after"] = behaviour.retry_after
            headers["retry-after-ms"] = str(int(float(behaviour.retry_after) * 1000) or 1)
        body = {"type": behaviour.error_type or kind, "message": behaviour.error_message or message}
        self.send_json(status, {"type": "error", "error": body}, headers)

    def _message(self, received: Received, number: int, behaviour: Behaviour) -> None:
        forced = (received.body.get("tool_choice") or {}).get("name")
        tool = behaviour.tool_call or ((forced, {}) if forced else None)
        text = "" if tool else answer(received, behaviour)
        prompt_tokens, output_tokens = word_counts(received, text)
        received.usage = {"input_tokens": prompt_tokens, "output_tokens": output_tokens}
        stop = behaviour.finish_reason or ("tool_use" if tool else "end_turn")
        block: dict[str, Any] = (
            {"type": "tool_use", "id": f"toolu_{number:04d}", "name": tool[0], "input": tool[1]}
            if tool
            else {"type": "text", "text": text}
        )
        message = {
            "id": f"msg_{number:04d}",
            "type": "message",
            "role": "assistant",
            "model": received.model,
            "content": [block],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": dict(received.usage),
        }
        if not received.stream:
            self.send_json(200, message)
            return
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {"input_tokens": prompt_tokens, "output_tokens": 1}
        empty = {**block, "input": {}} if tool else {"type": "text", "text": ""}
        deltas = (
            [{"type": "input_json_delta", "partial_json": json.dumps(tool[1])}]
            if tool
            else [{"type": "text_delta", "text": word} for word in words(text)]
        )
        events = [
            _event("message_start", message=start),
            _event("content_block_start", index=0, content_block=empty),
        ]
        events += [_event("content_block_delta", index=0, delta=delta) for delta in deltas]
        events += [
            _event("content_block_stop", index=0),
            _event(
                "message_delta",
                delta={"stop_reason": stop, "stop_sequence": None},
                usage={"output_tokens": output_tokens},
            ),
            _event("message_stop"),
        ]
        cut = behaviour.drop_after
        if cut is not None:  # a cut stream never reaches message_delta
            events = events[: 2 + min(cut, len(deltas))]
        self.start_stream()
        if not self.stream_pieces(events, replace(behaviour, drop_after=None)):
            return
        if cut is None:
            self.end_stream()
        else:
            self.drop(behaviour.drop)


AnthropicServer.handler = _Handler


def _event(kind: str, **data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def error(status: int, message: str | None = None, **more: Any) -> Behaviour:
    "An error reply in Anthropic's JSON shape."
    return Behaviour(status=status, error_message=message, **more)


def rate_limited(retry_after: str = "0") -> Behaviour:
    return Behaviour(status=429, retry_after=retry_after)


def overloaded() -> Behaviour:
    return Behaviour(status=529)
