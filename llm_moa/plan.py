"""Resolve and check everything a run needs before the first call.

Models are resolved here, on the caller's thread (llm's hooks are not
re-entrant). Each proposer slot gets its own model object, because model
objects need not be thread-safe (a llama.cpp-backed one crashes when two
threads drive one): the first object of a name comes from llm's full model
list, further ones from re-running only the hook of the plugin that registers
it. Should a plugin hand out one shared object anyway, members holding the
same object share one lock, so no two threads drive it at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import llm

from . import host
from .errors import MoaError
from .options import DEFAULT_SAMPLES, Config
from .prompts import Request, request_from_prompt
from .text import shorten


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
    _assign_attachments(request, members)
    for member in members:
        if request.history and not member.model.supports_conversation:
            raise MoaError(f"{member.name} does not support conversations, so it cannot continue one (llm -c)")
    schema = prompt.schema or None
    for member in aggregators if schema else []:
        if not member.model.supports_schema:
            raise MoaError(
                f"aggregator {member.name} does not support --schema; "
                "choose a schema-capable aggregator (llm models --schemas)"
            )
    _check_keys(members)
    return Plan(config, request, proposers, aggregators, schema)


def resolve_members(config: Config) -> tuple[list[Member], list[Member]]:
    "Every proposer and aggregator resolved, with validated options."
    with host.RESOLVING:
        default = llm.get_default_model()
        objects, saved = _Objects(default), {}
        proposers = [
            _member(objects.get("proposer", name, config.max_concurrency), name, "proposer",
                    {**config.proposer_options, **options}, saved)
            for name, options in config.proposers or [(default, {})] * DEFAULT_SAMPLES
        ]
        aggregators = [
            _member(objects.get("aggregator", name), name, "aggregator", {**config.aggregator_options, **options}, saved)
            for name, options in config.aggregators or [(default, {})]
        ]
    locks: dict[int, threading.Lock] = {}
    for member in proposers + aggregators:  # one lock per model object
        member.lock = locks.setdefault(id(member.model), member.lock)
    return proposers, aggregators


class _Objects:
    """Model objects by name: a fresh one for each use, at most ``limit`` per
    name (the run's max_concurrency: no more of its calls run at once)."""

    def __init__(self, default: str):
        self.default = default
        self.by_name: dict[str, Any] | None = None
        self.async_only: set[str] = set()
        self.handed: dict[str, list[Any]] = {}
        self.uses: dict[str, int] = {}

    def get(self, role: str, name: str, limit: int | None = None) -> Any:
        handed = self.handed.setdefault(name, [])
        use = self.uses[name] = self.uses.get(name, -1) + 1
        if limit and len(handed) >= limit:
            return handed[use % limit]
        if handed:
            model = host.fresh_model(handed[0].model_id) or handed[0]
        else:
            model = self._first(role, name)
        handed.append(model)
        return model

    def _first(self, role: str, name: str) -> Any:
        if self.by_name is None:
            self.by_name, self.async_only = host.models_by_name()
        model = self.by_name.get(name)
        if model is None and name in self.async_only:
            raise MoaError(f"{role} {name!r} is only available as an async model; llm-moa calls the sync version of each model")
        if model is None:
            raise MoaError(f"Unknown {role} model {name!r}; run 'llm models' to list the available models")
        if getattr(model, "is_moa", False):
            where = " (it is your default model; set -o proposers and -o aggregator)" if name == self.default else ""
            raise MoaError(f"{role} {name!r} is itself a MoA model{where}; proposers and aggregators must be ordinary models")
        return model


def _member(model: Any, name: str, role: str, options: dict, saved: dict[str, dict]) -> Member:
    if model.model_id not in saved:
        saved[model.model_id] = host.saved_model_options(model.model_id)
    merged = {**saved[model.model_id], **options}
    return Member(name, model, role, validate_model_options(role, name, model, merged))


def validate_model_options(role: str, name: str, model: Any, options: dict) -> dict:
    "Options checked by the model's own Options class; one line when bad."
    import pydantic

    try:
        validated = model.Options(**options)
    except pydantic.ValidationError as ex:
        error = ex.errors()[0]
        key = ".".join(str(part) for part in error.get("loc", ())) or "options"
        if error.get("type") == "extra_forbidden":
            allowed = ", ".join(model.Options.model_fields) or "no options"
            raise MoaError(f"{role} {name}: unknown option {key!r}; {model.model_id} accepts: {allowed}") from None
        value = shorten(repr(error.get("input")), 60)
        raise MoaError(f"{role} {name}: option {key}={value}: {error.get('msg')}") from None
    except TypeError as ex:
        raise MoaError(f"{role} {name}: invalid options ({ex})") from None
    return {key: value for key, value in validated if value is not None}


def _check_keys(members: list[Member]) -> None:
    "A missing key is found before anything is paid for, with llm's own hint."
    seen: set[int] = set()
    for member in members:
        if id(member.model) in seen:
            continue
        seen.add(id(member.model))
        try:
            member.model.get_key()
        except llm.NeedsKeyException as ex:
            raise MoaError(f"{member.role} {member.name}: {ex}") from None


def _assign_attachments(request: Request, members: list[Member]) -> None:
    "Each model gets the attachments it accepts; one nobody accepts is an error."
    for attachment in request.attachments:
        kind = attachment.resolve_type()
        takers = [m for m in members if kind in m.model.attachment_types]
        if not takers:
            raise MoaError(f"No proposer or aggregator accepts attachments of type {kind!r}")
        for member in takers:
            member.attachments.append(attachment)
