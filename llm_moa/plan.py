"""Resolve and validate everything a run needs before the first call.

Models are resolved here, on the caller's thread (the host's hooks are not
re-entrant). Each proposer slot gets its own model object: a model named twice
is resolved from a second run of the host's hooks, which builds fresh objects,
because model objects need not be thread-safe (a llama.cpp-backed one crashes
when two threads drive it). Should a plugin hand out one shared object anyway,
the per-object lock in ``Member.lock`` keeps two threads from driving it at once.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import llm

from .config import DEFAULT_SAMPLES, MemberSpec, MoaConfigError, RunConfig
from .prompts import Request


@dataclass
class Member:
    "One resolved model with the options it will be called with."

    name: str  # as the user wrote it
    model: Any  # an llm.Model
    options: dict = field(default_factory=dict)
    attachments: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    recorded_options: dict = field(default_factory=dict)  # safe to log

    @property
    def model_id(self) -> str:
        return self.model.model_id


@dataclass
class Plan:
    config: RunConfig
    request: Request
    proposers: list[Member]
    aggregators: list[Member]
    schema: dict | None = None


def make_plan(config: RunConfig, prompt: Any) -> Plan:
    from .prompts import request_from_prompt

    request = request_from_prompt(prompt)
    schema = prompt.schema or None
    proposers, aggregators = resolve_members(config)
    _assign_attachments(request, proposers, aggregators)
    for member in proposers + aggregators:
        if request.history and not member.model.supports_conversation:
            raise MoaConfigError(
                f"{member.name} does not support conversations, so it cannot continue one (llm -c)"
            )
    if schema:
        for member in aggregators:
            if not member.model.supports_schema:
                raise MoaConfigError(
                    f"aggregator {member.name} does not support --schema; "
                    "choose a schema-capable aggregator (llm models --schemas)"
                )
    return Plan(config, request, proposers, aggregators, schema)


_RESOLVING = threading.Lock()  # the host's hooks are not re-entrant: one resolution at a time


def get_model(name: str) -> Any:
    "llm.get_model, serialised with every other resolution this process makes."
    with _RESOLVING:
        return llm.get_model(name)


def resolve_members(config: RunConfig) -> tuple[list[Member], list[Member]]:
    "Every proposer and aggregator resolved, with validated options."
    with _RESOLVING:
        return _resolve_members(config)


def _resolve_members(config: RunConfig) -> tuple[list[Member], list[Member]]:
    from .record import known_secrets

    secrets = known_secrets()
    default = llm.get_default_model()
    specs = config.proposers or (MemberSpec(default),) * DEFAULT_SAMPLES
    resolver = _Resolver(default)
    proposers = [
        _member(resolver, "proposer", spec.model, {**config.proposer_options, **spec.options},
                secrets, share_after=config.max_concurrency)
        for spec in specs
    ]
    aggregators = [
        _member(resolver, "aggregator", spec.model, {**config.aggregator_options, **spec.options}, secrets)
        for spec in (config.aggregators or (MemberSpec(default),))
    ]
    _share_locks(proposers + aggregators)
    return proposers, aggregators


class _Resolver:
    """Model lookup by id or alias; each use of a name gets a fresh object.

    The first object of a name comes from one full run of the host's hooks.
    Further copies come from running only the hook of the plugin that
    registers that model (pluggy's subset_hook_caller): other plugins'
    registration can be slow (some list models over the network).

    With ``share_after=k`` (the run's ``max_concurrency``) a name gets at most
    k objects, handed out in turn: no more than k of its calls can run at
    once, so more copies would only cost hook runs (and, for local models
    that load weights per object, memory).
    """

    def __init__(self, default: str):
        self.default = default
        self._aliases: dict[str, Any] | None = None
        self._async_only: set[str] = set()
        self._handed: dict[str, list[Any]] = {}
        self._uses: Counter[str] = Counter()
        self._owners: dict[str, Any] = {}

    def get(self, role: str, name: str, share_after: int | None = None) -> Any:
        handed = self._handed.setdefault(name, [])
        use = self._uses[name]
        self._uses[name] += 1
        if share_after and len(handed) >= share_after:
            return handed[use % share_after]
        model = self._copy(handed[0]) if handed else self._first(role, name)
        handed.append(model)
        return model

    def _first(self, role: str, name: str) -> Any:
        if self._aliases is None:
            self._aliases = self._alias_map()
        model = self._aliases.get(name)
        if model is None:
            if name in self._async_only:
                raise MoaConfigError(
                    f"{role} {name!r} is only available as an async model; "
                    "llm-moa calls the sync version of each model"
                )
            raise MoaConfigError(
                f"Unknown {role} model {name!r}; run 'llm models' to list the available models"
            )
        if getattr(model, "is_moa", False):
            where = " (it is your default model; set -o proposers and -o aggregator)" if name == self.default else ""
            raise MoaConfigError(
                f"{role} {name!r} is itself a MoA model{where}; proposers and aggregators must be ordinary models"
            )
        return model

    def _copy(self, model: Any) -> Any:
        "A fresh object for the same model, from the plugin that registers it."
        model_id = model.model_id
        if model_id not in self._owners:
            self._owners[model_id] = _owner_of(model_id)
        owner = self._owners[model_id]
        fresh = _registered_by(owner).get(model_id) if owner is not None else None
        if fresh is None:  # e.g. a plugin that wraps other plugins' models
            fresh = self._alias_map().get(model_id, model)
        return fresh

    def _alias_map(self) -> dict[str, Any]:
        aliases: dict[str, Any] = {}
        for entry in llm.get_models_with_aliases():
            if entry.model is None:
                if entry.async_model is not None:
                    self._async_only.add(entry.async_model.model_id)
                    self._async_only.update(entry.aliases)
                continue
            for alias in entry.aliases:
                aliases[alias] = entry.model
            aliases[entry.model.model_id] = entry.model
        return aliases


def _owner_of(model_id: str) -> Any:
    "A hook caller for just the plugin that registers model_id, or None."
    from llm.plugins import pm

    plugins = pm.get_plugins()
    for plugin in plugins:
        caller = pm.subset_hook_caller("register_models", remove_plugins=[p for p in plugins if p is not plugin])
        if model_id in _registered_by(caller):
            return caller
    return None


def _registered_by(caller: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def register(model: Any, async_model: Any = None, aliases: Any = None) -> None:
        if model is not None:
            found[model.model_id] = model

    caller(register=register, model_aliases=[])
    return found


def _member(resolver: _Resolver, role: str, name: str, options: dict, secrets: list[str],
            share_after: int | None = None) -> Member:
    from .record import safe_options

    model = resolver.get(role, name, share_after)
    merged = {**saved_model_options(model.model_id), **options}
    validated = validate_model_options(role, name, model, merged)
    return Member(name, model, validated, recorded_options=safe_options(validated, secrets))


def saved_model_options(model_id: str) -> dict:
    "Defaults saved with 'llm models options set', as the host reads them."
    path = llm.user_dir() / "model_options.json"
    try:
        return dict(json.loads(path.read_text()).get(model_id) or {})
    except (FileNotFoundError, ValueError, AttributeError):
        return {}


def validate_model_options(role: str, name: str, model: Any, options: dict) -> dict:
    import pydantic

    try:
        validated = model.Options(**options)
    except pydantic.ValidationError as ex:
        raise MoaConfigError(_option_error(role, name, model, ex.errors()[0]))
    except TypeError as ex:
        raise MoaConfigError(f"{role} {name}: invalid options ({ex})")
    return {key: value for key, value in validated if value is not None}


def _option_error(role: str, name: str, model: Any, error: dict) -> str:
    key = ".".join(str(part) for part in error.get("loc", ())) or "options"
    if error.get("type") == "extra_forbidden":
        allowed = ", ".join(model.Options.model_fields) or "no options"
        return f"{role} {name}: unknown option {key!r}; {model.model_id} accepts: {allowed}"
    value = repr(error.get("input"))
    value = value if len(value) <= 60 else value[:57] + "..."
    return f"{role} {name}: option {key}={value}: {error.get('msg')}"


def _share_locks(members: list[Member]) -> None:
    "Members that ended up with the same model object share one lock."
    locks: dict[int, threading.Lock] = {}
    for member in members:
        member.lock = locks.setdefault(id(member.model), member.lock)


def _assign_attachments(request: Request, proposers: list[Member], aggregators: list[Member]) -> None:
    "Each model gets the attachments it accepts; one nobody accepts is an error."
    for attachment in request.attachments:
        kind = attachment.resolve_type()
        takers = [m for m in proposers + aggregators if kind in m.model.attachment_types]
        if not takers:
            raise MoaConfigError(
                f"No proposer or aggregator accepts attachments of type {kind!r}"
            )
        for member in takers:
            member.attachments.append(attachment)
