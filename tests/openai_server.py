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

Each test can change what a model does with ``server.behave(model, ...)``,
given a ``Behaviour`` or a function of the received request; ``times=N`` makes
it apply to that model's next N requests only. See the helpers at the bottom:
``error``, ``context_length_error``, ``rate_limited``, ``slow``, ``dropped``.

Every request is kept in ``server.requests`` (path, model, parsed body). The
Authorization header is never kept: only whether one came, and a digest that
``Received.sent_key(key)`` compares against.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
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


@dataclass(frozen=True)
class Behaviour:
    "What the server does with one request."

    reply: str | None = None  # the answer; None: "<model> says: <last user message>"
    status: int = 200  # anything else: an error body in OpenAI's shape
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    retry_after: str | None = None  # Retry-After header on an error reply
    chunk_delay: float = 0.0  # seconds before each streamed chunk
    drop_after: int | None = None  # streamed: stop after this many text chunks
    # How a dropped stream ends: "reset" closes the connection in the middle of
    # the chunked body (the client sees a broken body); "eof" ends the body
    # properly, but with no finish_reason and no [DONE] (the client sees a
    # clean end of a stream that never finished); "done" sends [DONE] with no
    # finish_reason, as llama_cpp.server does when another request interrupts
    # a stream (its --interrupt_requests, on by default).
    drop: str = "reset"
    finish_reason: str = "stop"
    # An error on a streamed request comes as an event in a 200 stream
    # (``data: {"error": {...}}``), as some servers send it, instead of as an
    # HTTP status; a request that is not streamed still gets the status.
    error_in_stream: bool = False
    stream_usage: str | None = None  # overrides the server's stream_usage for this reply


Rule = Behaviour | Callable[["Received"], Behaviour | None]


@dataclass
class Received:
    "One request as the server saw it."

    method: str
    path: str
    body: dict
    had_authorization: bool
    usage: dict | None = None  # the token counts of the answer (reported or not)
    _auth_digest: str | None = field(default=None, repr=False)

    @property
    def model(self) -> str | None:
        return self.body.get("model")

    @property
    def messages(self) -> list[dict]:
        return self.body.get("messages") or []

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    def texts(self, role: str) -> list[str]:
        "The text of every message with this role."
        return [_content_text(m.get("content")) for m in self.messages if m.get("role") == role]

    @property
    def last_user_text(self) -> str:
        users = self.texts("user")
        return users[-1] if users else ""

    def sent_key(self, key: str) -> bool:
        "The request carried ``Authorization: Bearer <key>``."
        return self._auth_digest == _digest(f"Bearer {key}")


@dataclass
class _Rule:
    rule: Rule
    remaining: int | None


class OpenAIServer:
    """The server; ``start()``/``stop()``, or use it as a context manager."""

    def __init__(
        self, models: tuple[str, ...] = ("srv-a", "srv-b", "srv-c"), stream_usage: str = "never"
    ):
        self.models = list(models)
        self.stream_usage = stream_usage
        self.requests: list[Received] = []
        self._rules: dict[str | None, list[_Rule]] = {}
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._count = 0

    # --- life cycle ---------------------------------------------------------

    def start(self) -> OpenAIServer:
        self._httpd = _HTTPServer((HOST, 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-test-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.stopping.set()  # slow streams stop waiting
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        "The api_base for extra-openai-models.yaml."
        return f"http://{HOST}:{self.port}/v1"

    # --- control ------------------------------------------------------------

    def behave(self, model: str | None, rule: Rule, times: int | None = None) -> None:
        """From now on, requests for ``model`` (None: any model) get ``rule``.

        ``rule`` is a ``Behaviour``, or a function of the ``Received`` request
        returning one (or None for the normal answer). With ``times`` it
        applies to the next ``times`` matching requests only. Later rules for
        the same model are consulted first.
        """
        with self._lock:
            self._rules.setdefault(model, []).insert(0, _Rule(rule, times))

    def reset(self) -> None:
        "Forget every rule and recorded request."
        with self._lock:
            self._rules.clear()
            self.requests.clear()

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

    # --- used by the handler ------------------------------------------------

    def _record(self, received: Received) -> tuple[int, Behaviour]:
        with self._lock:
            self.requests.append(received)
            self._count += 1
            number = self._count
            behaviour = None
            for key in (received.model, None):
                for entry in self._rules.get(key, []):
                    if entry.remaining is not None and entry.remaining <= 0:
                        continue
                    chosen = entry.rule(received) if callable(entry.rule) else entry.rule
                    if chosen is None:
                        continue
                    if entry.remaining is not None:
                        entry.remaining -= 1
                    behaviour = chosen
                    break
                if behaviour is not None:
                    break
        return number, behaviour or Behaviour()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: OpenAIServer

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stopping = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read server.requests
        pass

    # --- routing --------------------------------------------------------------

    def do_GET(self) -> None:
        self._read_body()
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            data = [
                {"id": m, "object": "model", "created": CREATED, "owned_by": "tests"}
                for m in self.server.owner.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_error_reply(
                404,
                Behaviour(
                    status=404, error_message=f"Unknown path {self.path}", error_code="unknown_url"
                ),
            )

    def do_POST(self) -> None:
        raw = self._read_body()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", errors="replace")}
        auth = self.headers.get("Authorization")
        received = Received(
            "POST",
            self.path,
            body if isinstance(body, dict) else {"body": body},
            had_authorization=auth is not None,
            _auth_digest=_digest(auth) if auth is not None else None,
        )
        number, behaviour = self.server.owner._record(received)
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
        text = (
            behaviour.reply
            if behaviour.reply is not None
            else f"{received.model} says: {received.last_user_text}"
        )
        usage = received.usage = _usage(received, text)
        if received.stream:
            self._stream(received, number, text, usage, behaviour)
        else:
            self._send_json(
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
                            "finish_reason": behaviour.finish_reason,
                        }
                    ],
                    "usage": usage,
                },
            )

    # --- replies ----------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._write(data)
        self.close_connection = True

    def _send_error_reply(self, status: int, behaviour: Behaviour) -> None:
        headers = (
            {"Retry-After": behaviour.retry_after} if behaviour.retry_after is not None else None
        )
        self._send_json(status, {"error": _error_body(status, behaviour)}, headers)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _stream_error(self, behaviour: Behaviour) -> None:
        "A 200 stream whose only event is the error."
        self._start_stream()
        self._event(json.dumps({"error": _error_body(behaviour.status, behaviour)}))
        self._write(b"0\r\n\r\n")

    def _stream(
        self, received: Received, number: int, text: str, usage: dict, behaviour: Behaviour
    ) -> None:
        self._start_stream()

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
        events += [chunk([delta(word)]) for word in _words(text)]
        stopping = self.server.stopping
        for sent, event in enumerate(events):
            if (
                behaviour.drop_after is not None and sent > behaviour.drop_after
            ):  # event 0 carries no text
                self._drop(behaviour.drop)
                return
            if behaviour.chunk_delay and stopping.wait(behaviour.chunk_delay):
                return
            if not self._event(json.dumps(event)):
                return
        if behaviour.drop_after is not None:  # a drop after the last text chunk
            self._drop(behaviour.drop)
            return
        self._event(json.dumps(chunk([delta(finish=behaviour.finish_reason)])))
        asked = bool((received.body.get("stream_options") or {}).get("include_usage"))
        mode = behaviour.stream_usage or self.server.owner.stream_usage
        if mode == "always" or (mode == "requested" and asked):
            self._event(json.dumps(chunk([], usage=usage)))
        self._event("[DONE]")
        self._write(b"0\r\n\r\n")

    def _event(self, data: str) -> bool:
        payload = f"data: {data}\n\n".encode()
        return self._write(b"%x\r\n%s\r\n" % (len(payload), payload))

    def _drop(self, how: str) -> None:
        if how in ("eof", "done"):
            if how == "done":
                self._event("[DONE]")
            self._write(b"0\r\n\r\n")  # the body ends cleanly, unfinished
            return
        try:  # the connection goes away in the middle of the body
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:  # the client went away
            self.close_connection = True
            return False


# --- helpers --------------------------------------------------------------------


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


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


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or [text]


def _usage(received: Received, text: str) -> dict:
    "Deterministic counts: words in every message, words in the answer."
    prompt = sum(len(_content_text(m.get("content")).split()) for m in received.messages)
    completion = len(text.split())
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


def slow(chunk_delay: float, **more: Any) -> Behaviour:
    return Behaviour(chunk_delay=chunk_delay, **more)


def dropped(after: int = 1, how: str = "reset", **more: Any) -> Behaviour:
    "A stream that stops after ``after`` text chunks, with no finish_reason and no [DONE]."
    return Behaviour(drop_after=after, drop=how, **more)
