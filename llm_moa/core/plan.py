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
from .options import DEFAULT_SAMPLES, Config
from .prompts import Request, request_from_prompt


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
    request: Request
    proposers: list[Member]
    aggregators: list[Member]
    schema: dict | None = None
    proposer_request: Request | None = None  # when the proposers are asked otherwise (tools)
    given_answers: list[str] | None = None  # known answers to aggregate: no proposer runs


def make_plan(config: Config, prompt: Any) -> Plan:
    request = request_from_prompt(prompt)
    proposers, aggregators = resolve_members(config)
    members = proposers + aggregators
    for attachment in request.attachments:  # each model gets the attachments it accepts
        kind = attachment.resolve_type()
        takers = [m for m in members if kind in m.model.attachment_types]
        if not takers:
            raise MoaError(f"No proposer or aggregator accepts attachments of type {kind!r}")
        for member in takers:
            member.attachments.append(attachment)
    for member in members:
        if request.history and not member.model.supports_conversation:
            raise MoaError(
                f"{member.name} does not support conversations, so it cannot continue one (llm -c)"
            )
    schema = prompt.schema or None
    for member in aggregators if schema else []:
        if not member.model.supports_schema:
            raise MoaError(
                f"aggregator {member.name} does not support --schema; "
                "choose a schema-capable aggregator (llm models --schemas)"
            )
    checked: set[int] = set()
    for (
        member
    ) in members:  # a missing key is found before anything is paid for, with llm's own hint
        try:
            if id(member.model) not in checked:
                member.model.get_key()
        except llm.NeedsKeyException as ex:
            raise MoaError(f"{member.role} {member.name}: {ex}") from None
        checked.add(id(member.model))
    return Plan(config, request, proposers, aggregators, schema)


def resolve_members(config: Config) -> tuple[list[Member], list[Member]]:
    """Every proposer and aggregator resolved, with validated options.

    Each use of a name gets a model object of its own, except that a proposer
    name gets at most ``max_concurrency`` objects (no more of the run's calls
    run at once anyway): further uses take turns with those."""
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

        proposers = [
            member("proposer", name, {**config.proposer_options, **options}, config.max_concurrency)
            for name, options in config.proposers or [(default, {})] * DEFAULT_SAMPLES
        ]
        aggregators = [
            member("aggregator", name, {**config.aggregator_options, **options})
            for name, options in config.aggregators or [(default, {})]
        ]
    locks: dict[int, threading.Lock] = {}
    for each in proposers + aggregators:  # one lock per model object
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
