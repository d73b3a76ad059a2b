"""A small OpenAI-compatible server for the tests, standard library only.

It serves ``POST /v1/chat/completions`` and ``GET /v1/models`` on 127.0.0.1
(a free port, a daemon thread) so that tests can run llm's *real* OpenAI plugin
over real HTTP against models registered in ``extra-openai-models.yaml``.

Answers are deterministic: ``"<model> says: <last user message>"``, streamed
word by word as server-sent events, or in one JSON body with a ``usage`` block.
Streamed replies carry no usage unless ``stream_usage`` says otherwise, as with
many OpenAI-compatible servers:

* ``"never"`` (default): no usage chunk, even when the client asks for one;
* ``"requested"``: a usage chunk when the request has
  ``stream_options.include_usage`` (what OpenAI itself does);
* ``"always"``: a usage chunk on every streamed reply.

Rules, the record of requests and the life cycle are ``stand_in``'s (see
there); the helpers here: ``error``, ``context_length_error``,
``rate_limited``, and ``slow``, ``dropped`` from ``stand_in``.
"""

from __future__ import annotations

import json
from typing import Any

from stand_in import (  # noqa: F401 - re-exported for the tests
    Behaviour,
    Handler,
    Received,
    StandInServer,
    answer,
    dropped,
    slow,
    word_counts,
    words,
)

CREATED = 1_700_000_000  # a fixed timestamp keeps every reply deterministic
STREAM_USAGE_MODES = ("never", "requested", "always")

# OpenAI's usual wording for each status, used when a test gives no message.
ERRORS = {
    400: ("invalid_request_error", "invalid_value", "Invalid value for 'messages'."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country not supported.",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


class OpenAIServer(StandInServer):
    """The server; ``start()``/``stop()``, or use it as a context manager."""

    name = "openai"

    def __init__(
        self, models: tuple[str, ...] = ("srv-a", "srv-b", "srv-c"), stream_usage: str = "never"
    ):
        super().__init__(models)
        self.stream_usage = stream_usage

    @property
    def url(self) -> str:
        "The api_base for extra-openai-models.yaml."
        return f"{self.base}/v1"

    def calls(self, model: str | None = None) -> list[Received]:
        "Chat completion requests received, for one model or all."
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.endswith("/chat/completions") and (model is None or r.model == model)
            ]

    def models_called(self) -> list[str]:
        return [r.model for r in self.calls()]


class _Handler(Handler):
    def do_GET(self) -> None:
        self.read_body()
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            data = [
                {"id": m, "object": "model", "created": CREATED, "owned_by": "tests"}
                for m in self.owner.models
            ]
            self.send_json(200, {"object": "list", "data": data})
        else:
            self._send_error_reply(
                404,
                Behaviour(
                    status=404, error_message=f"Unknown path {self.path}", error_code="unknown_url"
                ),
            )

    def do_POST(self) -> None:
        received = self.received()
        number, behaviour = self.owner.record(received)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_error_reply(
                404,
                Behaviour(
                    status=404, error_message=f"Unknown path {self.path}", error_code="unknown_url"
                ),
            )
            return
        if behaviour.status != 200:
            if behaviour.error_in_stream and received.stream:
                self._stream_error(behaviour)
            else:
                self._send_error_reply(behaviour.status, behaviour)
            return
        text = answer(received, behaviour)
        usage = received.usage = _usage(received, text)
        if received.stream:
            self._stream(received, number, text, usage, behaviour)
        else:
            self.send_json(
                200,
                {
                    "id": f"chatcmpl-{number}",
                    "object": "chat.completion",
                    "created": CREATED,
                    "model": received.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": behaviour.finish_reason or "stop",
                        }
                    ],
                    "usage": usage,
                },
            )

    # --- replies ----------------------------------------------------------------

    def _send_error_reply(self, status: int, behaviour: Behaviour) -> None:
        headers = (
            {"Retry-After": behaviour.retry_after} if behaviour.retry_after is not None else None
        )
        self.send_json(status, {"error": _error_body(status, behaviour)}, headers)

    def _stream_error(self, behaviour: Behaviour) -> None:
        "A 200 stream whose only event is the error."
        self.start_stream()
        self._event(json.dumps({"error": _error_body(behaviour.status, behaviour)}))
        self.end_stream()

    def _stream(
        self, received: Received, number: int, text: str, usage: dict, behaviour: Behaviour
    ) -> None:
        self.start_stream()

        def chunk(choices: list, **extra: Any) -> dict:
            return {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": received.model,
                "choices": choices,
                **extra,
            }

        def delta(
            content: str | None = None, role: str | None = None, finish: str | None = None
        ) -> dict:
            piece = {}
            if role:
                piece["role"] = role
            if content is not None:
                piece["content"] = content
            return {"index": 0, "delta": piece, "finish_reason": finish}

        events = [chunk([delta("", role="assistant")])]
        events += [chunk([delta(word)]) for word in words(text)]
        if not self.stream_pieces([_data(json.dumps(e)) for e in events], behaviour):
            return
        finish = behaviour.finish_reason or "stop"
        self._event(json.dumps(chunk([delta(finish=finish)])))
        asked = bool((received.body.get("stream_options") or {}).get("include_usage"))
        mode = behaviour.stream_usage or self.owner.stream_usage
        if mode == "always" or (mode == "requested" and asked):
            self._event(json.dumps(chunk([], usage=usage)))
        self._event("[DONE]")
        self.end_stream()

    def _event(self, data: str) -> bool:
        return self.chunk(_data(data))

    def drop(self, how: str) -> None:
        if how == "done":  # llama_cpp.server's interrupted stream: [DONE], no finish_reason
            self._event("[DONE]")
        super().drop(how)


OpenAIServer.handler = _Handler


# --- helpers --------------------------------------------------------------------


def _data(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


def _error_body(status: int, behaviour: Behaviour) -> dict:
    "OpenAI's error object: message, type, param, code."
    kind, code, message = ERRORS.get(
        status,
        ("server_error" if status >= 500 else "invalid_request_error", None, f"Error {status}"),
    )
    return {
        "message": behaviour.error_message or message,
        "type": behaviour.error_type or kind,
        "param": None,
        "code": behaviour.error_code if behaviour.error_code is not None else code,
    }


def _usage(received: Received, text: str) -> dict:
    "Deterministic counts: words in every message, words in the answer."
    prompt, completion = word_counts(received, text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def error(
    status: int, message: str | None = None, code: str | None = None, **more: Any
) -> Behaviour:
    "An error reply in OpenAI's JSON shape."
    return Behaviour(status=status, error_message=message, error_code=code, **more)


def context_length_error(limit: int = 2048, asked: int = 5000, **more: Any) -> Behaviour:
    "OpenAI's reply to a prompt that does not fit the model's context window."
    return Behaviour(
        status=400,
        error_type="invalid_request_error",
        error_code="context_length_exceeded",
        error_message=(
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {asked} tokens. Please reduce the length of the messages."
        ),
        **more,
    )


def rate_limited(retry_after: str = "1") -> Behaviour:
    return Behaviour(status=429, retry_after=retry_after)
