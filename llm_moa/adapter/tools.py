"""Tools (``-T``) on a MoA model, and a MoA panel as a tool of other models.

The tools belong to the host: llm's chain runs them, with its approval prompt,
debug output, chain limit and logging. A MoA run never executes a tool, it
only passes tools and calls along:

* The proposers get no tools. Their system prompt names the tools, so they can
  say which call would help and with what arguments.
* The aggregator gets the real tools. Its tool calls become the MoA response's
  own tool calls, with the aggregator's ids, for llm to run.
* llm then calls the MoA model again with the results (a tool-result turn).
  With ``tool_turns=aggregator`` (the default) only the aggregator continues:
  it gets the real results and again the proposals of the run that started
  the loop, so a long tool loop costs one call per round (per window step). With
  ``tool_turns=all`` every round is a full run, and the proposers read the
  results as text.

What each member is asked is built in core/prompts.py (``requests_from_prompt``)
and checked in core/plan.py (``fit_tools``); this module reads the proposals
a tool round reuses from the conversation in memory, and passes the
aggregator's tool calls on.

The ``MoA`` toolbox lets any tool-using model consult a MoA model. It is
registered on every llm command, so this module imports nothing heavy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import llm


class MoA(llm.Toolbox):
    """Ask a Mixture-of-Agents panel: several models answer, one writes the
    synthesis. ``MoA("research")`` consults the model moa-research; ``MoA``
    alone consults moa-default."""

    def __init__(self, preset: str = "default"):
        import click

        if not isinstance(preset, str) or len(preset.split()) != 1:
            raise _refusal(f"MoA(...) takes a preset name such as 'research', got {preset!r}")
        context = click.get_current_context(silent=True)
        if context is not None:  # the tool is MoA_ask whatever the preset: a second is unreachable
            if context.meta.get("llm_moa.panel"):
                raise _refusal(
                    "MoA(...) given twice; a model can reach only one panel (its tool is MoA_ask)"
                )
            context.meta["llm_moa.panel"] = True
        preset = preset.strip()
        self._model_id = preset if preset.startswith("moa-") else f"moa-{preset}"
        self._model()  # an unknown preset is refused before any call

    def _model(self) -> Any:
        from .. import host

        try:
            model = host.get_model(self._model_id)
        except llm.UnknownModelError:
            model = None
        if not getattr(model, "is_moa", False):
            raise _refusal(
                f"MoA(...): no MoA model {self._model_id!r}; the presets are listed by 'llm moa list'"
            )
        return model

    def ask(self, question: str) -> str:
        "Ask a panel of several AI models for a second opinion: their combined, checked answer. The panel does not see this conversation: put everything it needs in the question."  # one line
        return self._model().prompt(question).text()


def _refusal(message: str) -> Exception:
    """A bad ``MoA(...)``. llm's CLI builds its tools outside its error
    handling, so there it is a ClickException (one line, no traceback);
    elsewhere a MoaError."""
    import click

    from ..errors import MoaError

    return (
        click.ClickException(message)
        if click.get_current_context(silent=True)
        else MoaError(message)
    )


# --- a tool round -------------------------------------------------------------


def earlier_proposals(conversation: Any, model_id: str) -> tuple[list[str], str] | None:
    """The last proposer layer's answers of the latest full run of this tool
    loop, and that run's id: from the conversation's responses in memory
    (llm's chain, ``llm chat`` and the Python API keep them there). A record
    that does not parse has none."""
    from ..core.record import StoredRun

    for response in reversed(getattr(conversation, "responses", None) or []):
        if response.model.model_id != model_id:
            return None
        record = StoredRun.of(response.response_json)
        if record and record.tools and record.tools.proposals_from is not None:
            continue  # an aggregator-only turn: its proposals are an earlier run's
        # the last layer that answered (a cascade that agreed asks no later one), as read
        answers = [call.text for call in record.answered_proposals(read=True)] if record else []
        return (answers, response.id) if answers else None
    return None


# --- the aggregator's tool calls ----------------------------------------------


def hand_over_tool_calls(run: Any, response: Any) -> Iterator[Any]:
    """The answering aggregator's tool calls, made the MoA response's own: as
    stream events (which keep any provider metadata) and ``add_tool_call``."""
    from llm.parts import StreamEvent

    answered = [call for call in run.aggregator_calls if call.ok]
    offered = set((run.tools or {}).get("offered") or ())
    for part in answered[-1].tool_calls if answered else []:
        if (
            part.name not in offered
        ):  # a tool it was never given (e.g. the panel itself): not ours to ask for
            continue
        yield StreamEvent(
            type="tool_call_name",
            chunk=part.name,
            tool_call_id=part.tool_call_id,
            provider_metadata=part.provider_metadata,
        )
        yield StreamEvent(
            type="tool_call_args", chunk=json.dumps(part.arguments), tool_call_id=part.tool_call_id
        )
        response.add_tool_call(
            llm.ToolCall(name=part.name, arguments=part.arguments, tool_call_id=part.tool_call_id)
        )
