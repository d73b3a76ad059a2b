"""Running calls: the one place that starts, times, retries and abandons them.

Each call runs on its own *daemon* thread, so an abandoned call (timed out,
skipped by ``wait``, or cut off by Ctrl-C) can never keep the process alive.
All bookkeeping happens on the calling thread, which waits on one queue:
workers only report events (attempt, chunk, done, failed). A timed-out worker
may still report later; its events are ignored.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .plan import Member
from .prompts import Request, call_arguments
from .record import (
    CANCELLED,
    FAILED,
    OK,
    RUNNING,
    SKIPPED,
    TIMEOUT,
    CallRecord,
    describe_error,
)

POLL = 0.25  # longest wait between checks for a stop request
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0


class EmptyAnswer(Exception):
    def __init__(self) -> None:
        super().__init__("returned an empty answer")


class Stopped(Exception):
    "The run was stopped from outside (async cancellation)."


@dataclass
class Call:
    "One call to make: a member, what to ask it, and where to record it."

    member: Member
    request: Request
    record: CallRecord
    schema: dict | None = None
    stream: bool = False  # forward chunks to the caller (the aggregator)
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None


@dataclass
class Clock:
    start: float = field(default_factory=time.monotonic)

    def since(self, moment: float) -> float:
        return moment - self.start


def run_calls(
    calls: list[Call],
    *,
    clock: Clock,
    timeout: float | None,
    retries: int,
    need: int | None = None,
    quorum: int = 1,
    concurrency: int | None = None,
    stop: threading.Event | None = None,
) -> Iterator[tuple[str, str]]:
    """Run ``calls`` concurrently; yield ``(event_type, chunk)`` of streamed ones.

    Returns once every call has finished, or ``need`` calls succeeded, or
    ``quorum`` successes are out of reach. Calls still going are abandoned
    (recorded as skipped); on any exception, including KeyboardInterrupt, they
    are recorded as cancelled.
    """
    events: queue.SimpleQueue = queue.SimpleQueue()
    waiting = deque(calls)
    running: dict[int, Call] = {}
    succeeded = 0
    leftover = SKIPPED
    try:
        while waiting or running:
            if stop is not None and stop.is_set():
                raise Stopped()
            while waiting and (concurrency is None or len(running) < concurrency):
                call = waiting.popleft()
                call.deadline = time.monotonic() + timeout if timeout else None
                call.record.status = RUNNING
                call.record.started = clock.since(time.monotonic())
                running[id(call)] = call
                _start_worker(call, events, retries)
            if need is not None and succeeded >= need:
                break
            if succeeded + len(running) + len(waiting) < quorum:
                break
            try:
                call, kind, payload, moment = events.get(timeout=_wait_time(running))
            except queue.Empty:
                continue
            finally:  # also while events keep coming, e.g. a call streaming slowly
                _expire(running, clock, timeout)
            if id(call) not in running:
                continue  # a late report from an abandoned call
            record = call.record
            if kind == "attempt":
                record.attempts = payload
            elif kind == "retry":
                record.error = payload
            elif kind in ("text", "reasoning"):
                if record.first_token is None:
                    record.first_token = clock.since(moment)
                yield kind, payload
            else:
                del running[id(call)]
                record.ended = clock.since(moment)
                if kind == "done":
                    _record_result(record, payload)
                    succeeded += 1
                else:
                    record.status, record.error = FAILED, payload
    except BaseException:
        leftover = CANCELLED
        raise
    finally:
        now = clock.since(time.monotonic())
        for call in list(running.values()) + list(waiting):
            call.cancel.set()
            call.record.status = leftover
            if call.record.started is not None:
                call.record.ended = now


def _wait_time(running: dict[int, Call]) -> float:
    deadlines = [c.deadline for c in running.values() if c.deadline is not None]
    if not deadlines:
        return POLL
    return max(0.0, min(POLL, min(deadlines) - time.monotonic()))


def _expire(running: dict[int, Call], clock: Clock, timeout: float | None) -> None:
    now = time.monotonic()
    for key, call in list(running.items()):
        if call.deadline is not None and now >= call.deadline:
            del running[key]
            call.cancel.set()
            call.record.status = TIMEOUT
            call.record.error = f"timed out after {timeout:g}s"
            call.record.ended = clock.since(now)


def _record_result(record: CallRecord, result: dict[str, Any]) -> None:
    record.status = OK
    record.error = None
    record.text = result["text"]
    record.resolved_model = result["resolved_model"]
    record.input_tokens = result["input"]
    record.output_tokens = result["output"]
    record.token_details = result["details"]


class _Workers:
    """Daemon worker threads, reused across calls and runs.

    Starting a thread costs ~0.2 ms under load, which adds up with dozens of
    proposers per layer; an idle worker takes a job in microseconds. A call
    that hangs keeps its worker, and the next job simply gets a new one.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, name: str, fn: Callable, *args: Any) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._jobs.put((name, fn, args))
        if spawn:
            threading.Thread(target=self._loop, name="moa-worker", daemon=True).start()

    def _loop(self) -> None:
        thread = threading.current_thread()
        while True:
            name, fn, args = self._jobs.get()
            thread.name = name
            try:
                fn(*args)
            finally:
                thread.name = "moa-worker"
                with self._lock:
                    self._idle += 1


_workers = _Workers()


def _start_worker(call: Call, events: queue.SimpleQueue, retries: int) -> None:
    name = f"moa-{call.record.role}-{call.record.layer}-{call.record.index}"
    _workers.submit(name, _work, call, events, retries)


def _work(call: Call, events: queue.SimpleQueue, retries: int) -> None:
    "Runs on a worker thread: make the call, retrying what is worth retrying."
    attempt = 0
    while not call.cancel.is_set():
        attempt += 1
        events.put((call, "attempt", attempt, time.monotonic()))
        streamed = [False]
        try:
            result = _attempt(call, events, streamed)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported
            if call.cancel.is_set():
                return
            error = describe_error(exc)
            if attempt > retries or streamed[0] or not is_retryable(exc):
                events.put((call, "failed", error, time.monotonic()))
                return
            events.put((call, "retry", error, time.monotonic()))
            if call.cancel.wait(backoff_delay(attempt, exc)):
                return
            continue
        if result is not None:
            events.put((call, "done", result, time.monotonic()))
        return


def _attempt(call: Call, events: queue.SimpleQueue, streamed: list[bool]) -> dict[str, Any] | None:
    member = call.member
    kwargs = call_arguments(call.request, attachments=member.attachments, schema=call.schema)
    with member.lock:
        response = member.model.prompt(call.request.text, options=member.options, **kwargs)
        stream = response.stream_events()
        chunks: list[str] = []
        try:
            for event in stream:
                if call.cancel.is_set():
                    return None
                if event.type == "text":
                    chunks.append(event.chunk)
                if call.stream and event.type in ("text", "reasoning") and event.chunk:
                    streamed[0] = True
                    events.put((call, event.type, event.chunk, time.monotonic()))
        finally:
            stream.close()
        text = "".join(chunks)
        if not text.strip():
            raise EmptyAnswer()
        return {
            "text": text,
            "resolved_model": response.resolved_model,
            "input": response.input_tokens,
            "output": response.output_tokens,
            "details": response.token_details,
        }


def is_retryable(exc: BaseException) -> bool:
    "Worth another try: rate limits, server errors, timeouts, dropped streams."
    import pydantic

    import llm

    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return False
    if getattr(exc, "retryable", None) is False:  # an error that says so itself
        return False
    if isinstance(
        exc,
        (
            llm.NeedsKeyException,
            llm.UnknownModelError,
            pydantic.ValidationError,
            ValueError,
            TypeError,
            NotImplementedError,
            AttributeError,
        ),
    ):
        return False
    status = _status_code(exc)
    if status is not None:
        return status in (408, 409, 425, 429) or status >= 500
    return True


def _status_code(exc: BaseException) -> int | None:
    for source in (exc, getattr(exc, "response", None)):
        status = getattr(source, "status_code", None) or getattr(source, "status", None)
        if isinstance(status, int):
            return status
    return None


def backoff_delay(attempt: int, exc: BaseException | None = None) -> float:
    "Exponential backoff with jitter; a server's Retry-After wins when given."
    retry_after = _retry_after(exc)
    if retry_after is not None:
        return min(retry_after, 60.0)
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def _retry_after(exc: BaseException | None) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        value = headers.get("retry-after") if headers is not None else None
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None
