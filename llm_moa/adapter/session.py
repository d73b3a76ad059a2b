"""One MoA run as the llm models drive it: options, plan, engine, record.

Imported only when a MoA model runs, so that registering the models (which
happens on every llm command that resolves a model) stays cheap.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from .. import host
from ..core.calls import Clock, Stopped
from ..core.mixture import mixture_of_agents
from ..core.options import config_from, validate
from ..core.plan import make_plan
from ..core.record import Run, describe_error, missing_summary
from ..errors import MoaRunError
from ..text import visible
from .tools import earlier_proposals, pass_on


class Session:
    "One run: options merged and checked and models resolved up front, then the engine."

    def __init__(
        self, moa: Any, prompt: Any, response: Any, conversation: Any = None, stream: bool = True
    ):
        if moa.check is not None:
            moa.check(moa.model_id)
        options = validate(effective_options(moa, prompt, conversation))
        prompt.options = options  # what llm logs is what ran, and what llm -c continues
        self.config = config_from(options)
        self.plan = make_plan(self.config, prompt, earlier_proposals(conversation, moa.model_id))
        self.run = Run(moa.model_id, self.config.layers)
        self.run.tools = self.plan.tools
        self.response = response
        self.stream = stream
        self.done = False
        self._saved: str | None = None
        self._save_lock = threading.Lock()
        host.on_command_end(self._command_ended)

    def events(self, stop: threading.Event | None = None) -> Iterator[Any]:
        from llm.parts import StreamEvent

        from ..cli.progress import for_run

        clock = Clock()
        progress = for_run(self.config.progress, self.run)
        try:
            for kind, chunk in mixture_of_agents(
                self.plan, self.run, clock=clock, stream=self.stream, stop=stop
            ):
                if progress:  # the answer starts: clear the progress block first, once
                    progress.stop()
                    progress = None
                yield chunk if kind == "text" else StreamEvent(type=kind, chunk=chunk)
            yield from pass_on(self.run, self.response)
            self.done = True
        except (MoaRunError, KeyboardInterrupt, Stopped) as ex:
            if progress:
                progress.stop()  # before anything more is printed
            self.run.wall = clock.since(time.monotonic())
            self.run.error = (
                "interrupted"
                if isinstance(ex, KeyboardInterrupt)
                else ("cancelled" if isinstance(ex, Stopped) else describe_error(ex))
            )
            saved = self.save_unfinished()
            if saved and isinstance(ex, MoaRunError):
                raise MoaRunError(f"{ex}\n{saved}") from None
            if saved and isinstance(ex, KeyboardInterrupt):
                print(f"\n{saved}", file=sys.stderr)
            raise
        finally:
            if progress:
                progress.stop()
            if self.run.wall is None:
                self.run.wall = clock.since(time.monotonic())
            total_in, total_out, details = self.run.usage()
            self.response.set_usage(input=total_in, output=total_out, details=details)
            self.response.response_json = self.run.to_json()

    def save_unfinished(self) -> str | None:
        "Keep paid-for proposals of a run that ends without an answer (once); what to tell the user."
        with self._save_lock:
            if self._saved is None:
                self._saved = self._save() or ""
            return self._saved or None

    def _save(self) -> str | None:
        from ..files import unfinished

        answered = sum(call.ok for call in self.run.calls if call.role == "proposer")
        if not answered:
            return None
        try:
            path = unfinished.save(
                self.response.id,
                self.run.moa_model,
                self.plan.request.text,
                self.run.error or "interrupted",
                self.run.to_json()["moa"],
            )
        except Exception as ex:  # noqa: BLE001 - a failed save never hides the run's own error
            return f"(the answered proposals could not be saved: {describe_error(ex)})"
        if path is None:  # logging is off
            return None
        noun = "proposal is" if answered == 1 else "proposals are"
        return f"The {answered} answered {noun} saved; show them with: llm moa unfinished {self.response.id}"

    def _command_ended(self) -> None:
        "The llm command is over: say what a degraded run lacked, or keep an interrupted run's proposals."
        if self.done:
            missing = self.run.missing()
            if missing:
                proposers = len(self.run.layer_calls(self.config.layers - 1))
                print(
                    f"moa: {proposers - len(missing)} of {proposers} proposers answered "
                    f"({visible(missing_summary(missing), newlines=False)})",
                    file=sys.stderr,
                )
        elif self.run.error is None:  # interrupted outside the run, e.g. in llm's display loop
            self.run.error = "interrupted"
            saved = self.save_unfinished()
            if saved:
                print(f"\n{saved}", file=sys.stderr)


def effective_options(moa: Any, prompt: Any, conversation: Any) -> dict[str, Any]:
    """The options this run uses, from lowest to highest precedence:

    1. the preset (``moa-NAME``), 2. saved defaults (``llm models options
    set``), 3. the conversation's combination on ``llm -c`` (its last turn's
    options, which are always the whole combination it ran with), 4. options
    given for this prompt (``-o``, a template, or the Python API).
    """
    given = {key: value for key, value in prompt.options if value is not None}
    explicit_cli = host.explicit_options()
    saved = {}  # the Python API applies no saved defaults; the CLI merged them into prompt.options
    if explicit_cli is not None:  # take them apart: a typed -o wins even when equal to a default
        saved = host.saved_model_options(moa.model_id)
        given = {
            key: value for key, value in given.items() if key not in saved or key in explicit_cli
        }
    return {**moa.preset, **saved, **previous_options(moa.model_id, conversation), **given}


def previous_options(model_id: str, conversation: Any) -> dict:
    """The options of the previous turn of this MoA conversation.

    llm does not carry ``-o`` options over to ``llm -c``, but for a MoA model
    they *are* the combination. Python conversations and ``llm chat`` have
    their responses in memory; on ``llm -c`` they are read from the log.
    """
    if getattr(conversation, "responses", None):
        last = conversation.responses[-1]
        return (
            {k: v for k, v in last.prompt.options if v is not None}
            if last.model.model_id == model_id
            else {}
        )
    if not getattr(conversation, "loaded_messages", None):
        return {}
    return host.last_options(conversation.id, model_id)
