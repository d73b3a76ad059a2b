"""Running calls: the one place that starts, times, retries and abandons them.

Each call runs on a thread of its own, so an abandoned call (timed out, skipped
by ``wait``, or cut off by Ctrl-C) can never keep the process alive.
All bookkeeping happens on the calling thread, which waits on one queue:
workers only report events (attempt, chunk, done, failed). A timed-out worker
may still report later; its events are ignored.
"""

from __future__ import annotations

import _thread
import queue
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import llm

from .. import host
from .options import Config
from .prompts import call_arguments, earlier_turns
from .record import CANCELLED, FAILED, OK, RUNNING, SKIPPED, TIMEOUT, Call, describe_error

POLL = 0.25  # longest wait between checks for a stop request
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
# Errors no retry can fix, whatever their type: the request itself is wrong.
FINAL_MESSAGE = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long"
    r"|unsupported|not supported|invalid[ _-]request|authentication|unauthori[sz]ed|permission",
    re.I,
)


SURROGATE = re.compile("[\ud800-\udfff]")
EMPTY_RETRIES = 1  # an aggregator that replied with nothing is asked again this often, at least


class Stopped(Exception):
    "The run was stopped from outside (async cancellation)."


class EmptyAnswer(RuntimeError):
    """The model replied with nothing: no text, no tool call. No HTTP client
    retries that, so an aggregator is asked again (``EMPTY_RETRIES``) even
    with ``retries`` 0: its proposals are already paid for."""


@dataclass
class Clock:
    start: float = field(default_factory=time.monotonic)

    def since(self, moment: float) -> float:
        return moment - self.start


@dataclass(frozen=True)
class Quorum:
    """When a group of calls is over before all have finished, and whether it
    failed: the one place a quorum is judged. The group stops once ``wait``
    calls succeeded, or once ``need`` successes are out of reach."""

    need: int = 1
    wait: int | None = None

    def over(self, succeeded: int, pending: int) -> bool:
        return (self.wait is not None and succeeded >= self.wait) or succeeded + pending < self.need

    def missed(self, calls: list[Call]) -> bool:
        return sum(call.ok for call in calls) < self.need

    def after(self, succeeded: int) -> Quorum:
        "What the rest of the group must still bring once ``succeeded`` of it succeeded."
        return Quorum(max(1, self.need - succeeded), self.wait and max(1, self.wait - succeeded))


def run_calls(
    calls: list[Call],
    config: Config,
    quorum: Quorum = Quorum(),
    *,
    clock: Clock,
    stream: bool = True,
    stop: threading.Event | None = None,
) -> Iterator[tuple[str, str]]:
    """Run ``calls`` concurrently; yield ``(event_type, chunk)`` of streamed ones.

    They return once all have finished, or the ``quorum`` says the group is
    over (the proposers': ``wait`` and ``min_proposers``). Calls
    still going are abandoned (recorded as skipped); on any exception,
    including KeyboardInterrupt, they are recorded as cancelled. ``stream``
    false makes every call non-streamed (``llm --no-stream``), which is how
    many servers report usage.
    """
    events: queue.SimpleQueue = queue.SimpleQueue()
    waiting = list(calls)
    running: list[Call] = []
    succeeded = 0
    leftover = SKIPPED
    try:
        while waiting or running:
            if stop is not None and stop.is_set():
                raise Stopped()
            while waiting and (
                config.max_concurrency is None or len(running) < config.max_concurrency
            ):
                call = waiting.pop(0)
                call.deadline = time.monotonic() + config.timeout if config.timeout else None
                call.status, call.started = RUNNING, clock.since(time.monotonic())
                running.append(call)
                # A bare thread: unlike threading.Thread.start() it does not wait for the
                # thread to be scheduled (1 ms a call on a busy machine), and like a
                # daemon it never keeps the process alive.
                _thread.start_new_thread(_work, (call, events, config.retries, stream))
            if quorum.over(succeeded, len(running) + len(waiting)):
                break
            try:
                call, kind, payload, moment = events.get(timeout=_wait_time(running))
            except queue.Empty:
                continue
            finally:  # also while events keep coming, e.g. a call streaming slowly
                _expire(running, clock, config.timeout)
            if call not in running:
                continue  # a late report from an abandoned call
            if kind == "attempt":
                call.attempts = payload
            elif kind == "retry":
                call.error = payload
            elif kind in ("text", "reasoning"):
                if call.first_token is None:
                    call.first_token = clock.since(moment)
                yield kind, encodable(payload)
            else:
                running.remove(call)
                call.ended = clock.since(moment)
                if kind == "done":
                    answer = {**payload, "text": encodable(payload["text"])}
                    for name, value in {**answer, "status": OK, "error": None}.items():
                        setattr(call, name, value)
                    succeeded += 1
                else:
                    call.status, call.error = FAILED, payload
    except BaseException:
        leftover = CANCELLED
        raise
    finally:
        now = clock.since(time.monotonic())
        for call in running + waiting:
            call.cancel.set()
            call.status = leftover
            if call.started is not None:
                call.ended = now


def encodable(text: str) -> str:
    """Model text as every encoder takes it: a lone surrogate (a plugin's
    decoding gone wrong) becomes U+FFFD, so no later step, print or log fails."""
    return SURROGATE.sub("\ufffd", text)


def _wait_time(running: list[Call]) -> float:
    deadlines = [c.deadline for c in running if c.deadline is not None]
    if not deadlines:
        return POLL
    return max(0.0, min(POLL, min(deadlines) - time.monotonic()))


def _expire(running: list[Call], clock: Clock, timeout: float | None) -> None:
    now = time.monotonic()
    for call in [c for c in running if c.deadline is not None and now >= c.deadline]:
        running.remove(call)
        call.cancel.set()
        call.status, call.error = TIMEOUT, f"timed out after {timeout:g}s"
        call.ended = clock.since(now)


def _work(call: Call, events: queue.SimpleQueue, retries: int, stream: bool) -> None:
    "Runs on the call's own thread: make the call, retrying what is worth retrying."
    attempt = 0
    while not call.cancel.is_set():
        attempt += 1
        events.put((call, "attempt", attempt, time.monotonic()))
        streamed = [False]
        try:
            result = _attempt(call, events, streamed, stream)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported
            if call.cancel.is_set():
                return
            error = describe_error(exc)
            empty = isinstance(exc, EmptyAnswer)
            allowed = (
                max(retries, EMPTY_RETRIES) if empty and call.role == "aggregator" else retries
            )
            if attempt > allowed or streamed[0] or not is_retryable(exc):
                events.put((call, "failed", error, time.monotonic()))
                return
            events.put((call, "retry", error, time.monotonic()))
            if call.cancel.wait(0 if empty else backoff_delay(attempt, exc)):
                return
            continue
        if result is not None:
            events.put((call, "done", result, time.monotonic()))
        return


def _attempt(
    call: Call, events: queue.SimpleQueue, streamed: list[bool], stream: bool
) -> dict[str, Any] | None:
    member, request = call.member, call.request
    kwargs = call_arguments(request, attachments=member.attachments, schema=call.schema)
    with member.lock:
        target = (  # the history both as prompt.messages and as conversation.responses
            host.conversation_with(member.model, earlier_turns(request), request.system)
            if request.history
            else member.model
        )
        response = target.prompt(request.text, options=member.options, stream=stream, **kwargs)
        events_of = response.stream_events()
        chunks: list[str] = []
        try:
            for event in events_of:
                if call.cancel.is_set():
                    return None
                if event.type == "text":
                    chunks.append(event.chunk)
                if call.stream and event.type in ("text", "reasoning") and event.chunk:
                    streamed[0] = True
                    events.put((call, event.type, event.chunk, time.monotonic()))
        finally:
            events_of.close()
        text = "".join(chunks)
        tool_calls = requested_tool_calls(response) if call.request.tools else []
        if not text.strip() and not tool_calls:
            raise EmptyAnswer("returned an empty answer")
        return {
            "text": text,
            "resolved_model": response.resolved_model,
            "input_tokens": response.input_tokens,
            "output_tokens": response.output_tokens,
            "token_details": response.token_details,
            "truncated": _unfinished(response),
            "tool_calls": tool_calls,
        }


def _unfinished(response: Any) -> bool:
    """Whether the reply says it never finished, for each plugin that tells:
    an OpenAI-style reply without ``finish_reason`` (in its first choice, or
    its last streamed chunk), an Anthropic message without ``stop_reason``
    (its stream ended before ``message_delta``), an Ollama reply whose
    ``done`` line never came (llm-ollama then sets no ``response_json`` at
    all; its models have an ``ollama_name``)."""
    data = response.response_json
    if data is None:
        return hasattr(getattr(response, "model", None), "ollama_name")
    if not isinstance(data, dict):
        return False
    if data.get("type") == "message" and "stop_reason" in data:
        return not data["stop_reason"]
    if "done" in data:
        return not data["done"]
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return not choices[0].get("finish_reason")
    return data.get("object") == "chat.completion.chunk" and not data.get("finish_reason")


def is_retryable(exc: BaseException) -> bool:
    "Worth another try: rate limits, server errors, timeouts, dropped streams."
    if (
        not isinstance(exc, Exception) or getattr(exc, "retryable", None) is False
    ):  # Ctrl-C, or the error says so
        return False
    if isinstance(
        exc,
        (
            llm.NeedsKeyException,
            llm.UnknownModelError,
            ValueError,
            TypeError,
            NotImplementedError,
            AttributeError,
        ),
    ):  # pydantic's ValidationError is a ValueError
        return False
    for source in (exc, getattr(exc, "response", None)):
        status = getattr(source, "status_code", None) or getattr(source, "status", None)
        if isinstance(status, int):
            return status in (408, 409, 425, 429) or status >= 500
    said = " ".join(str(part) for part in (exc, getattr(exc, "code", ""), getattr(exc, "type", "")))
    return not FINAL_MESSAGE.search(said)


def backoff_delay(attempt: int, exc: BaseException | None = None) -> float:
    "Exponential backoff with jitter; a server's Retry-After (at most 60 s) wins when given."
    headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        return min(max(0.0, float(headers.get("retry-after"))), 60.0)
    except (TypeError, ValueError, AttributeError):  # no headers, no Retry-After, or not a number
        return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def requested_tool_calls(response: Any) -> list:
    """The tool calls an inner response asks for, as ``ToolCallPart``s, each
    with an id: whether its plugin used ``add_tool_call`` or stream events."""
    from llm.parts import ToolCallPart
    from llm.utils import monotonic_ulid

    return [
        part
        if part.tool_call_id
        else replace(part, tool_call_id=f"tc_{str(monotonic_ulid()).lower()}")
        for message in response.messages()
        for part in message.parts
        if isinstance(part, ToolCallPart) and not part.server_executed
    ]
