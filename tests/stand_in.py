"""What every stand-in server of the tests shares, standard library only.

A stand-in speaks one provider's HTTP API on 127.0.0.1 (a free port, a daemon
thread) so that a real plugin can be pointed at it: ``openai_server`` (llm's
OpenAI plugin), ``anthropic_server`` (llm-anthropic), ``ollama_server``
(llm-ollama). Each subclasses ``StandInServer`` for its life cycle, its rules
and its record of requests, and ``Handler`` for its routes.

Each test can change what a model does with ``server.behave(model, ...)``,
given a ``Behaviour`` or a function of the received request; ``times=N`` makes
it apply to that model's next N requests only. Every request is kept in
``server.requests``. The Authorization header (or x-api-key) is never kept:
only whether one came, and a digest that ``Received.sent_key(key)`` compares
against. Loops are bounded: a slow stream waits on the server's stop event.
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


@dataclass(frozen=True)
class Behaviour:
    "What the server does with one request."

    reply: str | None = None  # the answer; None: "<model> says: <last user message>"
    status: int = 200  # anything else: an error body in the provider's shape
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    retry_after: str | None = None  # Retry-After header on an error reply
    chunk_delay: float = 0.0  # seconds before each streamed chunk
    drop_after: int | None = None  # streamed: stop after this many text chunks
    # How a dropped stream ends: "reset" closes the connection in the middle of
    # the chunked body (the client sees a broken body); "eof" ends the body
    # properly, but before the provider says how it stopped (the client sees a
    # clean end of a stream that never finished); "done" (OpenAI) sends [DONE]
    # with no finish_reason, as llama_cpp.server does when another request
    # interrupts a stream.
    drop: str = "reset"
    finish_reason: str | None = None  # how the reply says it stopped; None: the provider's usual
    # An error on a streamed request comes as an event in a 200 stream instead
    # of as an HTTP status; a request that is not streamed still gets the status.
    error_in_stream: bool = False
    stream_usage: str | None = None  # OpenAI: overrides the server's stream_usage for this reply
    tool_call: tuple[str, dict] | None = None  # ask for this tool (name, arguments) instead


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
        return [content_text(m.get("content")) for m in self.messages if m.get("role") == role]

    @property
    def last_user_text(self) -> str:
        users = self.texts("user")
        return users[-1] if users else ""

    def sent_key(self, key: str) -> bool:
        "The request carried the key (``Authorization: Bearer <key>``, or ``x-api-key``)."
        return self._auth_digest in (_digest(f"Bearer {key}"), _digest(key))


@dataclass
class _Rule:
    rule: Rule
    remaining: int | None


class StandInServer:
    """The server; ``start()``/``stop()``, or use it as a context manager."""

    name = "stand-in"

    def __init__(self, models: tuple[str, ...]):
        self.models = list(models)
        self.requests: list[Received] = []
        self._rules: dict[str | None, list[_Rule]] = {}
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._count = 0

    handler: type[BaseHTTPRequestHandler]  # set by each subclass

    # --- life cycle ---------------------------------------------------------

    def start(self):
        self._httpd = _HTTPServer((HOST, 0), self.handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-test-server",
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

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

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

    def paths(self, path: str) -> list[Received]:
        "The requests received on one path."
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/") == path]

    # --- used by the handler ------------------------------------------------

    def record(self, received: Received, rules: bool = True) -> tuple[int, Behaviour]:
        "Keep the request; its number and what to do with it (the rules' choice, if ``rules``)."
        with self._lock:
            self.requests.append(received)
            self._count += 1
            number = self._count
            behaviour = None
            for key in (received.model, None) if rules else ():
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
    owner: StandInServer

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stopping = threading.Event()


class Handler(BaseHTTPRequestHandler):
    "Reading requests and writing replies; each stand-in adds its routes."

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read server.requests
        pass

    @property
    def owner(self) -> Any:
        return self.server.owner

    def received(self, method: str = "POST") -> Received:
        "The request, parsed and recorded (its body JSON, or what could not be parsed)."
        raw = self.read_body()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", errors="replace")}
        auth = self.headers.get("Authorization") or self.headers.get("x-api-key")
        return Received(
            method,
            self.path,
            body if isinstance(body, dict) else {"body": body},
            had_authorization=auth is not None,
            _auth_digest=_digest(auth) if auth is not None else None,
        )

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.write(data)
        self.close_connection = True

    def start_stream(self, content_type: str = "text/event-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def chunk(self, payload: bytes) -> bool:
        "One piece of a chunked body; False once the client went away."
        return self.write(b"%x\r\n%s\r\n" % (len(payload), payload))

    def end_stream(self) -> None:
        self.write(b"0\r\n\r\n")

    def stream_pieces(self, pieces: list[bytes], behaviour: Behaviour) -> bool:
        """Send ``pieces`` (``drop_after`` counts the text pieces after the first,
        which carries none); False when the stream was dropped or the client left."""
        stopping = self.server.stopping
        for sent, piece in enumerate(pieces):
            if behaviour.drop_after is not None and sent > behaviour.drop_after:
                self.drop(behaviour.drop)
                return False
            if behaviour.chunk_delay and stopping.wait(behaviour.chunk_delay):
                return False
            if not self.chunk(piece):
                return False
        if behaviour.drop_after is not None:  # a drop after the last text piece
            self.drop(behaviour.drop)
            return False
        return True

    def drop(self, how: str) -> None:
        if how != "reset":
            self.end_stream()  # the body ends cleanly, unfinished
            return
        try:  # the connection goes away in the middle of the body
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def write(self, data: bytes) -> bool:
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


def content_text(content: Any) -> str:
    "The text of a message's content: a string, or a list of parts with text."
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            content_text(part.get("content"))
            if part.get("type") == "tool_result"
            else part.get("text", "")
            for part in content
            if isinstance(part, dict)
        )
    return ""


def words(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or [text]


def answer(received: Received, behaviour: Behaviour) -> str:
    "The reply: the behaviour's, else '<model> says: <last user message>'."
    if behaviour.reply is not None:
        return behaviour.reply
    return f"{received.model} says: {received.last_user_text}"


def word_counts(received: Received, text: str) -> tuple[int, int]:
    "Deterministic token counts: words in every message (and the system prompt), words in the answer."
    system = received.body.get("system")
    prompt = sum(len(content_text(m.get("content")).split()) for m in received.messages)
    return prompt + len(content_text(system).split()), len(text.split())


def slow(chunk_delay: float, **more: Any) -> Behaviour:
    return Behaviour(chunk_delay=chunk_delay, **more)


def dropped(after: int = 1, how: str = "reset", **more: Any) -> Behaviour:
    "A stream that stops after ``after`` text chunks, before it says how it stopped."
    return Behaviour(drop_after=after, drop=how, **more)
