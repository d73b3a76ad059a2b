"""The ``moa-*`` models as llm sees them, sync and async; a run is a ``session.Session``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import llm

# The MoA model must declare its attachment types up front (llm checks them
# before any option is read); each attachment then goes to the models that
# accept its type, and one that no model accepts is refused before any call.
ATTACHMENT_TYPES = frozenset(
    [f"image/{kind}" for kind in ("png", "jpeg", "webp", "gif", "heic", "heif")]
    + ["application/pdf"]
    + [f"text/{kind}" for kind in ("plain", "markdown", "csv", "html")]
    + [f"audio/{kind}" for kind in ("mpeg", "mp3", "wav", "x-wav", "ogg", "flac", "aac", "webm")]
    + [f"video/{kind}" for kind in ("mp4", "mpeg", "webm", "quicktime")]
)


class _MoaBase:
    can_stream = True
    supports_schema = True
    supports_tools = True  # the aggregator's tool calls are passed on; llm runs the tools
    attachment_types = ATTACHMENT_TYPES
    is_moa = True  # lets the planner refuse a MoA model as a member

    @property
    def Options(self) -> type:  # the name llm reads
        """Imported on first use: models are registered on every llm command that
        resolves a model, and building pydantic classes then would cost every one."""
        from ..core.options import MoaOptions

        return MoaOptions

    def __init__(
        self,
        model_id: str = "moa-default",
        preset: dict | None = None,
        check: Callable[[str], None] | None = None,
    ):
        self.model_id = model_id
        self.preset = dict(preset or {})
        # called with the model id before a run, e.g. "is the local extra installed?"
        self.check = check

    def __str__(self) -> str:
        kind = " (async)" if isinstance(self, llm.AsyncModel) else ""
        return f"MoA{kind}: {self.model_id}"


class MoaModel(_MoaBase, llm.Model):
    def execute(self, prompt, stream, response, conversation) -> Iterator[Any]:
        from .session import Session

        yield from Session(self, prompt, response, conversation, stream).events()


class AsyncMoaModel(_MoaBase, llm.AsyncModel):
    async def execute(self, prompt, stream, response, conversation) -> AsyncIterator[Any]:
        from .session import Session

        session = Session(self, prompt, response, conversation, stream)  # resolves models here
        stop = threading.Event()
        async for item in _in_thread(session.events(stop), stop):
            yield item


async def _in_thread(events: Iterator[Any], stop: threading.Event) -> AsyncIterator[Any]:
    """Drive a blocking generator on a daemon thread without blocking the loop."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    end = object()

    def post(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, item)
        except RuntimeError:  # the loop is gone: nobody is listening
            stop.set()

    def pump() -> None:
        try:
            for item in events:
                post(item)
            post(end)
        except BaseException as ex:  # noqa: BLE001 - raised on the awaiting side (no item is an exception)
            post(ex)

    threading.Thread(target=pump, name="moa-async-run", daemon=True).start()
    try:
        while (item := await inbox.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
