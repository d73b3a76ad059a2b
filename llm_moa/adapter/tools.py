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
  the loop, so a long tool loop costs one call per round. With
  ``tool_turns=all`` every round is a full run, and the proposers read the
  results as text.

The ``MoA`` toolbox lets any tool-using model consult a MoA model. It is
registered on every llm command, so this module imports nothing heavy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import llm

from ..core.prompts import AGGREGATOR_NOTE, PROPOSER_NOTE, RESULTS_TURN

PANEL_TOOL = "MoA_ask"  # the MoA toolbox's one tool, which a MoA run never offers its members


class MoA(llm.Toolbox):
    """Ask a Mixture-of-Agents panel: several models answer, one writes the
    synthesis. ``MoA("research")`` consults the model moa-research; ``MoA``
    alone consults moa-default."""

    def __init__(self, preset: str = "default"):
        if not isinstance(preset, str) or len(preset.split()) != 1:
            raise _refusal(f"MoA(...) takes a preset name such as 'research', got {preset!r}")
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


# --- a run with tools ---------------------------------------------------------


def fit_tools(plan: Any, prompt: Any, conversation: Any, model_id: str) -> dict | None:
    """Fit the plan to this turn's tools and tool results; the run record's
    ``tools`` entry, or None when the turn has neither.

    Raises ``MoaError`` before any call when an aggregator cannot use tools.
    """
    from ..errors import MoaError

    tools = [tool for tool in prompt.tools if tool.name != PANEL_TOOL]
    history, results = _turn(prompt)
    if not tools and not results:
        return None
    for member in plan.aggregators:
        if not member.model.supports_tools:
            raise MoaError(
                f"aggregator {member.name} does not support tools; "
                "choose one that does (llm models --tools)"
            )
    request = plan.request
    plan.request = replace(
        request,
        system=_join(request.system, AGGREGATOR_NOTE) if tools else request.system,
        history=tuple(_history(history, as_text=False)),
        tools=tuple(tools),
        tool_results=tuple(results),  # llm adds them to the messages
    )
    calls = _calls_by_id(history)
    results_text = "\n\n".join(_result_text(result, calls) for result in results)
    plan.proposer_request = replace(
        request,
        text=_join(RESULTS_TURN.format(results=results_text), request.text)
        if results
        else request.text,
        system=_join(request.system, PROPOSER_NOTE.format(tools=tools_text(tools)))
        if tools
        else request.system,
        history=tuple(_history(history, as_text=True)),
    )
    record: dict[str, Any] = {"offered": [tool.name for tool in tools]}
    if results:
        for member in plan.aggregators:  # attachments of results reach it inside the results
            member.attachments = []
        record.update(tool_results=len(results), tool_turns="all")  # a full run, unless:
        earlier = plan.config.tool_turns == "aggregator" and earlier_proposals(
            conversation, model_id
        )
        if earlier:
            plan.given_answers, record["proposals_from"] = earlier
            record["tool_turns"] = "aggregator"
    return record


def earlier_proposals(conversation: Any, model_id: str) -> tuple[list[str], str] | None:
    """The last proposer layer's answers of the latest full run of this tool
    loop, and that run's id: from the conversation's responses in memory
    (llm's chain, ``llm chat`` and the Python API keep them there)."""
    for response in reversed(getattr(conversation, "responses", None) or []):
        if response.model.model_id != model_id:
            return None
        record = (response.response_json or {}).get("moa") or {}
        if "proposals_from" in (record.get("tools") or {}):
            continue  # an aggregator-only turn: its proposals are an earlier run's
        layers = record.get("proposer_layers") or []
        left_out = {  # -o outliers drop: the aggregator read only the others (core/outliers.py)
            n
            for check in (record.get("decision") or {}).get("outliers") or []
            if check.get("layer") == len(layers)
            for n in check.get("left_out") or []
        }
        answers = [
            call["text"]
            for n, call in enumerate(layers[-1]["proposers"] if layers else [], 1)
            if call.get("status") == "ok" and n not in left_out
        ]
        return (answers, response.id) if answers else None
    return None


def _turn(prompt: Any) -> tuple[list, list]:
    """The conversation before this turn (no system message) and this turn's
    tool results: ``prompt.tool_results`` in llm's chain; after
    ``response.reply()`` they come only as the last message."""
    messages = list(prompt.messages)
    if messages and messages[0].role == "system":
        messages = messages[1:]
    if messages and messages[-1].role == "user":  # the prompt's own text: request.text
        messages = messages[:-1]
        if not prompt.tool_results:
            return messages, []
    if messages and messages[-1].role == "tool":
        results = list(prompt.tool_results) or [
            llm.ToolResult(
                name=part.name,
                output=part.output,
                tool_call_id=part.tool_call_id,
                attachments=list(part.attachments or []),
            )
            for part in messages[-1].parts
            if type(part).__name__ == "ToolResultPart"
        ]
        return messages[:-1], results
    return messages, list(prompt.tool_results or [])


def _history(messages: list, as_text: bool) -> Iterator[Any]:
    """The history without reasoning parts (which may be proposals): for the
    aggregator its text, tool calls and tool results; for the proposers, who
    get no tools, all of it written out as text."""
    from llm.parts import Message, TextPart, ToolCallPart, ToolResultPart

    calls = _calls_by_id(messages)
    for message in messages:
        parts: list = []
        for part in message.parts:
            if isinstance(part, TextPart) and part.text:
                parts.append(part.text if as_text else TextPart(text=part.text))
            elif isinstance(part, ToolCallPart) and not part.server_executed:
                parts.append(f"[called the tool {_call_text(part)}]" if as_text else part)
            elif isinstance(part, ToolResultPart) and not part.server_executed:
                parts.append(_result_text(part, calls) if as_text else part)
        if not parts or message.role not in ("user", "assistant", "tool"):
            continue
        if not as_text:
            yield Message(role=message.role, parts=parts)
        elif message.role == "tool":
            yield Message(
                role="user", parts=[TextPart(text="Tool results:\n\n" + "\n\n".join(parts))]
            )
        else:
            yield Message(role=message.role, parts=[TextPart(text="\n\n".join(parts))])


def _calls_by_id(messages: list) -> dict:
    from llm.parts import ToolCallPart

    return {
        part.tool_call_id: part
        for message in messages
        for part in message.parts
        if isinstance(part, ToolCallPart)
    }


def _call_text(call: Any) -> str:
    return f"{call.name}({json.dumps(call.arguments, ensure_ascii=False, default=repr)})"


def _result_text(result: Any, calls: dict) -> str:
    "A tool result (llm.ToolResult or a ToolResultPart) as text, headed by the call it answers."
    call = calls.get(result.tool_call_id)
    return f"{_call_text(call) if call else result.name} returned:\n{result.output}"


def tools_text(tools: list) -> str:
    "One entry per tool: its name, description and arguments."
    lines = []
    for tool in tools:
        lines.append(f"- {tool.name}: {' '.join((tool.description or '(no description)').split())}")
        properties = (tool.input_schema or {}).get("properties") or {}
        if properties:
            arguments = {
                name: spec.get("type", "any") if isinstance(spec, dict) else "any"
                for name, spec in properties.items()
            }
            lines.append(f"  arguments: {json.dumps(arguments)}")
    return "\n".join(lines)


def _join(*texts: str) -> str:
    return "\n\n".join(text for text in texts if text)


# --- the aggregator's tool calls ----------------------------------------------


def pass_on(run: Any, response: Any) -> Iterator[Any]:
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
