"""A stand-in for the Ollama API, as llm-ollama 0.19.1 calls it (through the ``ollama`` client).

Every ``llm`` command that lists models makes llm-ollama call ``GET
/api/tags`` (counted: ``server.tags_requests``) and ``POST /api/show`` per
model for its capabilities (cached on disk by digest). ``POST /api/chat``
answers ``"<model> says: <last user message>"`` (a ``Behaviour``'s ``reply``
instead) as NDJSON lines, one per word, the last with ``"done": true``,
``done_reason`` and the counts ``prompt_eval_count`` / ``eval_count`` (its
usage); or one JSON object with ``"stream": false``. A ``tool_call``
behaviour answers with ``message.tool_calls``; an error is
``{"error": "..."}`` with the status. ``dropped(how="eof")`` ends the stream
cleanly before the ``done`` line. Point llm-ollama here with ``OLLAMA_HOST``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from stand_in import Behaviour, Handler, Received, StandInServer, answer, word_counts, words

MODELS = ("llama3.2:latest", "qwen3:4b")
CREATED = "2026-01-01T00:00:00Z"


class OllamaServer(StandInServer):
    name = "ollama"

    def __init__(self, models: tuple[str, ...] = MODELS, capabilities=("completion", "tools")):
        super().__init__(models)
        self.capabilities = list(capabilities)

    @property
    def tags_requests(self) -> int:
        "How many times a client listed the models."
        return len(self.paths("/api/tags"))

    def calls(self, model: str | None = None) -> list[Received]:
        "Chat requests received, for one model or all."
        return [r for r in self.paths("/api/chat") if model is None or r.model == model]


class _Handler(Handler):
    def do_GET(self) -> None:
        self.owner.record(self.received("GET"), rules=False)
        if self.path.rstrip("/") == "/api/tags":
            self.send_json(200, {"models": [_listed(name) for name in self.owner.models]})
        else:
            self.send_json(404, {"error": "404 page not found"})

    def do_POST(self) -> None:
        received = self.received()
        path = self.path.rstrip("/")
        behaviour = self.owner.record(received, rules=path == "/api/chat")[1]
        if path == "/api/show":
            name = received.body.get("model") or received.body.get("name")
            if name not in self.owner.models:
                self.send_json(404, {"error": f"model '{name}' not found"})
            else:
                show = {"modelfile": "", "parameters": "", "template": "{{ .Prompt }}"}
                show.update(details=_details(), model_info={}, capabilities=self.owner.capabilities)
                self.send_json(200, show)
        elif path != "/api/chat":
            self.send_json(404, {"error": "404 page not found"})
        elif behaviour.status != 200:
            self.send_json(behaviour.status, {"error": behaviour.error_message or "model failed"})
        else:
            self._chat(received, behaviour)

    def _chat(self, received: Received, behaviour: Behaviour) -> None:
        text = "" if behaviour.tool_call else answer(received, behaviour)
        prompt_tokens, output_tokens = word_counts(received, text)
        received.usage = {"prompt_eval_count": prompt_tokens, "eval_count": output_tokens}
        final = {
            "model": received.model,
            "created_at": CREATED,
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": behaviour.finish_reason or "stop",
            "total_duration": 1000,
            "load_duration": 10,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 100,
            "eval_count": output_tokens,
            "eval_duration": 100,
        }
        if behaviour.tool_call:
            name, arguments = behaviour.tool_call
            final["message"]["tool_calls"] = [{"function": {"name": name, "arguments": arguments}}]
        if received.body.get("stream") is False:
            final["message"]["content"] = text
            self.send_json(200, final)
            return

        def line(content: str) -> bytes:
            message = {"role": "assistant", "content": content}
            piece = {"model": received.model, "created_at": CREATED, "message": message}
            return json.dumps({**piece, "done": False}).encode() + b"\n"

        pieces = [line("")] + [line(word) for word in words(text) if text]
        cut = behaviour.drop_after
        self.start_stream("application/x-ndjson")
        if not self.stream_pieces(
            pieces[: None if cut is None else 1 + cut], replace(behaviour, drop_after=None)
        ):
            return
        if cut is not None:  # a cut stream never reaches its "done" line
            self.drop(behaviour.drop)
            return
        self.chunk(json.dumps(final).encode() + b"\n")
        self.end_stream()


OllamaServer.handler = _Handler


def _details() -> dict:
    return {"format": "gguf", "family": "llama", "parameter_size": "3B", "quantization_level": "Q4"}


def _listed(name: str) -> dict:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "name": name,
        "model": name,
        "modified_at": CREATED,
        "size": 1,
        "digest": digest,
        "details": _details(),
    }


def error(status: int, message: str = "model failed", **more: Any) -> Behaviour:
    'An error reply in Ollama\'s shape: ``{"error": message}``.'
    return Behaviour(status=status, error_message=message, **more)
