"""Resolve and check everything a run needs before the first call.

Models are resolved here, on the caller's thread (llm's hooks are not
re-entrant). Each proposer slot gets its own model object, because model
objects need not be thread-safe (a llama.cpp-backed one crashes when two
threads drive one): the first object of a name comes from llm's full model
list, further ones are copies of it or come from re-running only the hook of
the plugin that registered it (``host.fresh_model``). Should a plugin hand out
one shared object anyway, members holding the same object share one lock, so
no two threads drive it at once.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any

import llm
import pydantic

from .. import host
from ..errors import MoaError
from ..text import shorten
from .options import Config
from .prompts import PANEL_TOOL, Request, requests_from_prompt


@dataclass
class Member:
    "One model with the options it will be called with."

    name: str  # as the user wrote it
    model: Any  # an llm.Model
    role: str  # "proposer" or "aggregator"
    options: dict = field(default_factory=dict)  # validated by the model's own Options
    attachments: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def model_id(self) -> str:
        return self.model.model_id


@dataclass
class Plan:
    config: Config
    request: Request  # what the aggregator is asked
    proposer_request: Request  # what the proposers are asked: otherwise with tools
    proposers: list[Member]
    aggregators: list[Member]
    schema: dict | None = None
    tools: dict | None = None  # the run record's ``tools`` entry, when the turn has tools
    given_answers: list[str] | None = None  # known answers to aggregate: no proposer runs


def make_plan(
    config: Config,
    prompt: Any,
    earlier: tuple[list[str], str] | None = None,
    problems: list[str] | None = None,
) -> Plan:
    """Everything a run needs, checked before the first call. ``earlier``:
    the proposals of this tool loop's latest full run and that run's id (from
    the conversation in memory), which a tool round reuses. The first problem
    found raises ``MoaError``; with ``problems`` (``llm moa plan``) every
    problem is added to it instead, and a member that could not be resolved
    is None in the plan's lists."""
    tools = [tool for tool in prompt.tools if tool.name != PANEL_TOOL]
    request, proposer_request = requests_from_prompt(prompt, tools)
    proposers, aggregators = resolve_members(config, problems)
    members = [m for m in proposers + aggregators if m is not None]
    for attachment in request.attachments:  # each model gets the attachments it accepts
        kind = attachment.resolve_type()
        takers = [m for m in members if kind in m.model.attachment_types]
        if not takers:
            _refuse(problems, f"No proposer or aggregator accepts attachments of type {kind!r}")
        for member in takers:
            member.attachments.append(attachment)
    for member in members:
        if request.history and not member.model.supports_conversation:
            _refuse(
                problems,
                f"{member.name} does not support conversations, so it cannot continue one (llm -c)",
            )
    schema = prompt.schema or None
    for member in aggregators if schema else []:
        if member is not None and not member.model.supports_schema:
            _refuse(
                problems,
                f"aggregator {member.name} does not support --schema; "
                "choose a schema-capable aggregator (llm models --schemas)",
            )
    record, given = fit_tools(config, members, request, earlier, problems)
    checked: set[int] = set()
    # a missing key is found before anything is paid for, with llm's own hint
    for member in members:
        try:
            if id(member.model) not in checked:
                member.model.get_key()
        except llm.NeedsKeyException as ex:
            _refuse(problems, f"{member.role} {member.name}: {ex}")
        checked.add(id(member.model))
    return Plan(config, request, proposer_request, proposers, aggregators, schema, record, given)


def fit_tools(
    config: Config,
    members: list[Member],
    request: Request,
    earlier: Any,
    problems: list[str] | None = None,
) -> tuple[dict | None, list[str] | None]:
    """The run record's ``tools`` entry and, on a tool round that only the
    aggregator continues, the proposals it reuses. Refuses before any call
    what cannot act on the tools: a strategy whose answer is a proposal as
    written (proposers cannot call tools), an aggregator without tool support."""
    if not request.tools and not request.tool_results:
        return None, None
    if config.aggregate != "synthesize" or config.skip_if_agree:
        synthesizes = config.aggregate == "synthesize"
        name = "skip_if_agree" if synthesizes else f"aggregate {config.aggregate}"
        fix = "set skip_if_agree false" if synthesizes else "use aggregate synthesize"
        _refuse(
            problems,
            f"{name} cannot be used with tools (-T): its answer is a proposal as written, "
            f"and only the aggregator can call tools; {fix}",
        )
    aggregators = [member for member in members if member.role == "aggregator"]
    for member in aggregators:
        if not member.model.supports_tools:
            _refuse(
                problems,
                f"aggregator {member.name} does not support tools; "
                "choose one that does (llm models --tools)",
            )
    record: dict[str, Any] = {"offered": [tool.name for tool in request.tools]}
    if not request.tool_results:
        return record, None
    for member in aggregators:  # attachments of results reach it inside the results
        member.attachments = []
    record.update(tool_results=len(request.tool_results), tool_turns="all")  # a full run, unless:
    if config.tool_turns == "aggregator" and earlier:
        record.update(tool_turns="aggregator", proposals_from=earlier[1])
        return record, earlier[0]
    return record, None


def _refuse(problems: list[str] | None, message: str) -> None:
    "Raise the problem, or collect it when every problem is wanted at once."
    if problems is None:
        raise MoaError(message)
    problems.append(message)


def resolve_members(
    config: Config, problems: list[str] | None = None
) -> tuple[list[Member], list[Member]]:
    """Every proposer and aggregator resolved, with validated options.

    Each use of a name gets a model object of its own, except that a proposer
    name gets at most ``max_concurrency`` objects (no more of the run's calls
    run at once anyway): further uses take turns with those. With
    ``problems``, a member that fails is None and its problem is collected."""
    with host.RESOLVING:
        default = llm.get_default_model()
        known, async_only = host.models_by_name()
        handed: dict[str, list[Any]] = {}
        saved_options = functools.cache(host.saved_model_options)

        def known_model(role: str, name: str) -> Any:
            model = known.get(name)
            if model is None and name in async_only:
                raise MoaError(
                    f"{role} {name!r} is only available as an async model; llm-moa calls the sync version of each model"
                )
            if model is None:
                raise MoaError(
                    f"Unknown {role} model {name!r}; run 'llm models' to list the available models"
                )
            if getattr(model, "is_moa", False):
                where = (
                    " (it is your default model; set -o proposers and -o aggregator)"
                    if name == default
                    else ""
                )
                raise MoaError(
                    f"{role} {name!r} is itself a MoA model{where}; proposers and aggregators must be ordinary models"
                )
            return model

        def member(role: str, name: str, options: dict, limit: int | None = None) -> Member:
            try:
                return checked_member(role, name, options, limit)
            except MoaError as ex:
                if problems is None:
                    raise
                problems.append(str(ex))
                return None  # type: ignore[return-value] - only when problems are collected

        def checked_member(role: str, name: str, options: dict, limit: int | None) -> Member:
            objects = handed.setdefault(name, [])
            if limit and len(objects) >= limit:  # take turns with the objects handed out
                objects.append(objects.pop(0))
            elif objects:
                objects.append(host.fresh_model(objects[0]) or objects[0])
            else:
                objects.append(known_model(role, name))
            model = objects[-1]
            return Member(
                name,
                model,
                role,
                validate_model_options(
                    role, name, model, {**saved_options(model.model_id), **options}
                ),
            )

        proposer_names, aggregator_names = config.members(default)
        proposers = [
            member("proposer", name, {**config.proposer_options, **options}, config.max_concurrency)
            for name, options in proposer_names
        ]
        aggregators = [
            member("aggregator", name, {**config.aggregator_options, **options})
            for name, options in aggregator_names
        ]
    locks: dict[int, threading.Lock] = {}
    for each in filter(None, proposers + aggregators):  # one lock per model object
        each.lock = locks.setdefault(id(each.model), each.lock)
    return proposers, aggregators


def validate_model_options(role: str, name: str, model: Any, options: dict) -> dict:
    "Options checked by the model's own Options class; one line when bad."
    try:
        validated = model.Options(**options)
    except pydantic.ValidationError as ex:
        error = ex.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "options"
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(model.Options.model_fields) or "no options"
            raise MoaError(
                f"{role} {name}: unknown option {key!r}; {model.model_id} accepts: {allowed}"
            ) from None
        raise MoaError(
            f"{role} {name}: option {key}={shorten(repr(error['input']), 60)}: {error['msg']}"
        ) from None
    except TypeError as ex:
        raise MoaError(f"{role} {name}: invalid options ({ex})") from None
    return {key: value for key, value in validated if value is not None}
