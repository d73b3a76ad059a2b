"""The ``moa-*`` models as llm sees them: sync and async, one shared ``Session``."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, AsyncIterator, Iterator

import llm

from .config import MoaOptions, parse_config
from .engine import run_moa
from .calls import Clock
from .plan import make_plan
from .record import RunRecord, describe_error

# The MoA model must declare its attachment types up front (llm checks them
# before any option is read); each attachment then goes to the models that
# accept its type, and one that no model accepts is refused before any call.
ATTACHMENT_TYPES = frozenset(
    {
        "image/png", "image/jpeg", "image/webp", "image/gif", "image/heic", "image/heif",
        "application/pdf", "text/plain", "text/markdown", "text/csv", "text/html",
        "audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/ogg",
        "audio/flac", "audio/aac", "audio/webm",
        "video/mp4", "video/mpeg", "video/webm", "video/quicktime",
    }
)


class _MoaBase:
    can_stream = True
    supports_schema = True
    attachment_types = ATTACHMENT_TYPES
    is_moa = True  # lets the planner refuse a MoA model as a member
    Options = MoaOptions

    def __init__(self, model_id: str = "moa-default", preset: dict | None = None):
        self.model_id = model_id
        self.preset = dict(preset or {})

    def __str__(self) -> str:
        kind = " (async)" if isinstance(self, llm.AsyncModel) else ""
        return f"MoA{kind}: {self.model_id}"


class MoaModel(_MoaBase, llm.Model):
    def execute(self, prompt, stream, response, conversation) -> Iterator[Any]:
        yield from Session(self, prompt, response).events()


class AsyncMoaModel(_MoaBase, llm.AsyncModel):
    async def execute(self, prompt, stream, response, conversation) -> AsyncIterator[Any]:
        session = Session(self, prompt, response)  # resolves models on this thread
        stop = threading.Event()
        async for item in _in_thread(session.events(stop), stop):
            yield item


class Session:
    "One run: options parsed and models resolved up front, then the engine."

    def __init__(self, moa: _MoaBase, prompt: Any, response: Any):
        given = {key: value for key, value in prompt.options if value is not None}
        self.config = parse_config({**moa.preset, **given})
        self.plan = make_plan(self.config, prompt, moa.model_id)
        self.run = RunRecord(moa.model_id, self.config.layers)
        self.response = response

    def events(self, stop: threading.Event | None = None) -> Iterator[Any]:
        from llm.parts import StreamEvent

        clock = Clock()
        try:
            for kind, chunk in run_moa(self.plan, self.run, clock=clock, stop=stop):
                yield chunk if kind == "text" else StreamEvent(type=kind, chunk=chunk)
        except BaseException as ex:
            self.run.error = describe_error(ex)
            raise
        finally:
            self.run.wall = clock.since(time.monotonic())
            self._finish()

    def _finish(self) -> None:
        total_in, total_out, details = self.run.usage()
        self.response.set_usage(input=total_in, output=total_out, details=details)
        self.response.response_json = self.run.to_json()


async def _in_thread(events: Iterator[Any], stop: threading.Event) -> AsyncIterator[Any]:
    """Drive a blocking generator on a daemon thread without blocking the loop."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    end = object()

    def post(item: Any, error: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, (item, error))
        except RuntimeError:  # the loop is gone: nobody is listening
            stop.set()

    def pump() -> None:
        try:
            for item in events:
                post(item)
        except BaseException as ex:  # noqa: BLE001 - handed to the awaiting side
            post(end, ex)
        else:
            post(end)

    threading.Thread(target=pump, name="moa-async-run", daemon=True).start()
    try:
        while True:
            item, error = await inbox.get()
            if item is end:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
