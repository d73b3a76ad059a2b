"""The options of a MoA model, validated by pydantic as llm validates every model's.

``MoaOptions`` is what ``llm models --options`` shows and what ``-o``, saved
defaults, templates and presets are checked against; every error names the
option, the bad value and what is allowed. ``Config`` is the same choice with
the defaults filled in, the one object the planner and the engine read.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import field, make_dataclass
from typing import Any, Literal

import llm
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..errors import MoaError
from ..text import shorten

MAX_LAYERS = 10
MAX_PROPOSERS = 128
MAX_RETRIES = 10
MAX_TIMEOUT = 86_400.0
MAX_NAME = 200
DEFAULT_SAMPLES = 3  # proposers when none are given: Self-MoA, samples of the default model
DEFAULTS: dict[
    str, Any
] = {  # each option's default, written once: its description and Config read it
    "layers": 2,
    "proposer_options": {},
    "aggregator_options": {},
    "aggregate": "synthesize",
    "skip_if_agree": False,
    "timeout": 300.0,
    "retries": 0,  # the OpenAI and Anthropic clients already retry twice
    "min_proposers": 1,
    "show_proposals": False,
    "progress": True,
    "tool_turns": "aggregator",
    "outliers": "keep",
}  # every other option: None (proposers and aggregator: see Config.members)
STRATEGIES = ("synthesize", "select", "vote")
# Words that stand for a value, in any case; blank text means "not set" where a default is meant.
WORDS = {
    "proposer_options": {"": None},
    "aggregator_options": {"": None},
    "aggregator_system": {"": None},
    "aggregate": {"": None, **{name: name for name in STRATEGIES}},
    "timeout": {"none": 0, "off": 0},
    "wait": {"all": None},
}

Members = str | list[str | dict[str, Any]] | None


def _error(message: str) -> PydanticCustomError:
    "A validation error whose message is exactly ``message``."
    return PydanticCustomError("moa_option", "{message}", {"message": message})


class OptionsConflict(Exception):
    """Two options that do not fit together on ``llm prompt``, one of them a
    saved default: llm shows it as one line. Not a ValueError, which pydantic
    would wrap in its many-line form."""


_OURS: ContextVar[bool] = ContextVar("moa_validating", default=False)  # inside validate()


def _refusal(name: str, value: Any, partner: str, data: dict, problem: str) -> Exception:
    """The error for ``name`` not fitting ``partner``. `llm prompt` validates
    the -o options alone, then again merged with the saved defaults, and shows
    that second error in pydantic's raw form: a conflict only the merge finds
    is one line naming both options instead."""
    from .. import host

    params = host.cli_params()
    typed = set(dict(params.get("options") or ())) if params and "prompt" in params else None
    if _OURS.get() or typed is None or data.get(partner) is None or {name, partner} <= typed:
        return _error(problem)
    return OptionsConflict(
        f"Options {name} {_show(value)} and {partner} {_show(data[partner])} do not fit "
        f"together ({problem}); one of them is a saved default (`llm models options list`)"
    )


def _show(value: Any) -> str:
    return shorten(repr(value), 60)


class MoaOptions(llm.Options):
    proposers: Members = Field(
        None,
        description="Proposer models by id or alias: 'a,b,c', 'a*3' for three samples, or "
        'a JSON list of ids and {"model": ID, "options": {...}}. Default: 3 samples of the '
        "default model (Self-MoA).",
    )
    aggregator: Members = Field(
        None,
        description="Aggregator model id or alias; 'a,b' tries b if a fails before "
        "answering. Also JSON, as for proposers. Default: the default model.",
    )
    layers: int | None = Field(
        None,
        ge=2,
        le=MAX_LAYERS,
        description=f"Layers, the aggregator's last: {DEFAULTS['layers']} (default) = proposers then "
        "aggregator; 3 adds a round where proposers see the first answers "
        f"(2-{MAX_LAYERS}).",
    )
    proposer_options: dict[str, Any] | None = Field(
        None, description='JSON options for every proposer, e.g. {"temperature": 0.7}.'
    )
    aggregator_options: dict[str, Any] | None = Field(
        None, description="JSON options for the aggregator."
    )
    aggregator_system: str | None = Field(
        None,
        description="Replaces the aggregator's built-in instruction on how to synthesise.",
    )
    aggregate: str | None = Field(
        None,
        description="How the last answers become one: 'synthesize' (default: the "
        "aggregator writes a new answer), 'select' (it picks the best, output verbatim), "
        "'vote' (the most common answer, no aggregator call; a tie as in 'select').",
    )
    skip_if_agree: bool | None = Field(
        None,
        description="When every last answer is the same (ignoring case, spacing and final "
        "punctuation), output it without calling the aggregator.",
    )
    cascade: int | None = Field(
        None,
        ge=1,
        le=MAX_PROPOSERS,
        description="Ask only the first N proposers of layer 1; if they agree, output that "
        "answer, otherwise ask the rest and carry on. Below the number of proposers.",
    )
    window: int | None = Field(
        None,
        ge=2,
        le=MAX_PROPOSERS,
        description="The aggregator reads at most N answers at a time, carrying its "
        "synthesis forward (Self-MoA-Seq). 2 to the number of proposers; synthesize only.",
    )
    outliers: Literal["keep", "drop"] | None = Field(
        None,
        description="'drop': leave out an answer that stands alone against a clear majority "
        "(2/3 and at least 2 agreeing) before the aggregator or the next layer reads them; "
        f"never below 2 answers or min_proposers, never under vote. Default {DEFAULTS['outliers']!r}.",
    )
    timeout: float | None = Field(
        None,
        ge=0,
        le=MAX_TIMEOUT,
        allow_inf_nan=False,
        description="Seconds one call may take, retries included (default "
        f"{DEFAULTS['timeout']:g}; 0 = no limit). A proposer past it is abandoned.",
    )
    retries: int | None = Field(
        None,
        ge=0,
        le=MAX_RETRIES,
        description=f"Retries of a failing call, with backoff (default {DEFAULTS['retries']}, "
        f"max {MAX_RETRIES}), on top of the model client's own. Missing keys, bad "
        "requests, context-length errors and invalid options are never retried.",
    )
    min_proposers: int | None = Field(
        None,
        ge=1,
        le=MAX_PROPOSERS,
        description="Quorum: fewer successful proposers than this in a layer end the run "
        f"with an error (default {DEFAULTS['min_proposers']}).",
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        le=MAX_PROPOSERS,
        description="Most calls in flight at once (default: a layer's proposers). 1 for "
        "local models.",
    )
    wait: int | None = Field(
        None,
        ge=1,
        le=MAX_PROPOSERS,
        description="Aggregate once this many proposers of a layer answered; the rest are "
        "skipped. Default: all.",
    )
    show_proposals: bool | None = Field(
        None,
        description="Also emit each layer's answers as reasoning before the answer (dimmed "
        "while streaming, under ## Reasoning in logs).",
    )
    progress: bool | None = Field(
        None, description="Live progress on stderr when it is a terminal (default true)."
    )
    tool_turns: Literal["aggregator", "all"] | None = Field(
        None,
        description="With tools (-T), who answers tool results: 'aggregator' (default) "
        "alone, one call per round; 'all', a full MoA run per round, the proposers reading "
        "the results as text.",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data: Any) -> Any:
        "An unknown option is refused with the list of allowed ones."
        unknown = (
            [key for key in data if key not in cls.model_fields] if isinstance(data, dict) else []
        )
        if unknown:
            message = f"unknown option; allowed: {', '.join(cls.model_fields)}"
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    InitErrorDetails(
                        type=_error(message), loc=(str(unknown[0]),), input=data[unknown[0]]
                    )
                ],
            )
        return data

    @field_validator("*", mode="wrap")
    @classmethod
    def _name_the_value(cls, value: Any, handler: Any) -> Any:
        "pydantic's own messages, with the bad value added."
        try:
            return handler(value)
        except ValidationError as ex:
            error = ex.errors()[0]
            if error["type"] == "moa_option":
                raise
            raise _error(f"{error['msg']}, got {_show(value)}")

    @field_validator("aggregate", "cascade", "window", "min_proposers", "wait")
    @classmethod
    def _fits(cls, value: Any, info: ValidationInfo) -> Any:
        """Options checked against the proposers and the options before them
        (pydantic validates fields in order): a vote needs two voters, cascade
        leaves proposers to escalate to, window splits a synthesis, the quorum
        fits a cascade's first stage and wait is not below the quorum."""
        if value is None:
            return None
        name, data = info.field_name, info.data
        count = len(_expand(data["proposers"])) if data.get("proposers") else DEFAULT_SAMPLES
        if name == "aggregate" and value not in STRATEGIES:
            raise _error(f"unknown strategy {_show(value)}; allowed: {', '.join(STRATEGIES)}")
        quorum = data.get("min_proposers") or 1
        if name == "aggregate" and value == "vote" and count < 2:
            raise _refusal(
                name, value, "proposers", data, f"vote needs at least 2 proposers, got {count}"
            )
        if name == "cascade" and value >= count:
            why = f"{value} is not below the {count} proposers (cascade asks the rest when the first disagree)"
            raise _refusal(name, value, "proposers", data, why)
        if name in ("window", "min_proposers", "wait") and value > count:
            raise _refusal(
                name, value, "proposers", data, f"{value} is more than the {count} proposers"
            )
        if name == "window" and (data.get("aggregate") or "synthesize") != "synthesize":
            why = f"works with aggregate synthesize only, not {data['aggregate']!r}"
            raise _refusal(name, value, "aggregate", data, why)
        if name == "min_proposers" and data.get("cascade") and value > data["cascade"]:
            why = f"{value} is more than cascade ({data['cascade']}): its first proposers may answer alone"
            raise _refusal(name, value, "cascade", data, why)
        if name == "wait" and value < quorum:
            raise _refusal(
                name, value, "min_proposers", data, f"{value} is less than min_proposers ({quorum})"
            )
        return value

    @field_validator(
        "proposers", "aggregator", "proposer_options", "aggregator_options", mode="before"
    )
    @classmethod
    def _parse(cls, value: Any, info: ValidationInfo) -> Any:
        "Models from 'a,b', 'a*3' or JSON; options from a JSON object."
        if value is None:
            return None
        return _members(value) if info.field_name in ("proposers", "aggregator") else _object(value)

    @field_validator(*WORDS, mode="before")
    @classmethod
    def _value_of_word(cls, value: Any, info: ValidationInfo) -> Any:
        "A word that stands for a value (see WORDS); runs first, being defined last."
        word = value.strip().lower() if isinstance(value, str) else None
        return WORDS[info.field_name].get(word, value)


# --- members: 'a,b', 'a*3', JSON ids or {"model": ..., "options": ...} ---------


def _members(value: Any) -> str | list[str | dict]:
    "The entries of ``proposers`` or ``aggregator``, checked; one plain model stays a string."
    if isinstance(value, str):
        text = value.strip()
        value = _load_json(text) if text.startswith(("[", "{")) else text.split(",")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _error(f"expected model ids ('a,b', 'a*3') or a JSON list, got {_show(value)}")
    entries = [_entry(item) for item in value]
    count = len(_expand(entries))
    if not count:
        raise _error("at least one model is required")
    if count > MAX_PROPOSERS:
        raise _error(f"at most {MAX_PROPOSERS} allowed, got {count}")
    return entries[0] if len(entries) == 1 and isinstance(entries[0], str) else entries


def _entry(item: Any) -> str | dict:
    if isinstance(item, str):
        name, count = _split_repeat(item.strip())
        _model_name(name)
        return f"{name}*{count}" if count != 1 else name
    if isinstance(item, dict):
        extra = sorted(str(key) for key in item if key not in ("model", "options"))
        if extra:
            raise _error(f"unknown key {extra[0]!r} in {_show(item)}; allowed: model, options")
        if "model" not in item:
            raise _error(f'each object needs a "model", got {_show(item)}')
        options = _object(item.get("options") or {})
        return {"model": _model_name(item["model"]), "options": options}
    raise _error(
        f'each entry must be a model id or {{"model": ..., "options": {{...}}}}, got {_show(item)}'
    )


def _split_repeat(text: str) -> tuple[str, int]:
    "'gpt-4o*3' means three samples of gpt-4o."
    if "*" not in text:
        return text, 1
    name, _, count = text.rpartition("*")
    count = count.strip()
    if not (
        count.isascii() and count.isdigit() and len(count) <= 3 and 1 <= int(count) <= MAX_PROPOSERS
    ):
        raise _error(
            f"repeat count in {_show(text)} must be a whole number from 1 to {MAX_PROPOSERS}"
        )
    return name.strip(), int(count)


def _expand(entries: str | list[str | dict]) -> list[tuple[str, dict]]:
    "Each entry as (model name, its own options), repeats written out."
    members: list[tuple[str, dict]] = []
    for entry in [entries] if isinstance(entries, str) else entries:
        if isinstance(entry, dict):
            members.append((entry["model"], dict(entry.get("options") or {})))
        else:
            name, count = _split_repeat(entry)
            members.extend([(name, {})] * count)
    return members


def _model_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _error(f"expected a model id or alias, got {_show(value)}")
    value = value.strip()
    if len(value) > MAX_NAME or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise _error(f"not a valid model id or alias: {_show(value)}")
    return value


def _object(value: Any) -> dict[str, Any]:
    "A JSON object of options, from text or a dict."
    if isinstance(value, str):
        value = _load_json(value)
    if not isinstance(value, dict):
        raise _error(f'expected a JSON object like {{"temperature": 0.7}}, got {_show(value)}')
    bad = [key for key in value if not isinstance(key, str) or not key]
    if bad:
        raise _error(f"option names must be non-empty text, got {_show(bad[0])}")
    return dict(value)


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise _error("JSON is nested too deeply")
    except ValueError as ex:
        raise _error(f"invalid JSON ({ex.args[0]}): {_show(text)}")


# --- the run's configuration --------------------------------------------------


class _Config:
    "What a run reads of its options (the fields are MoaOptions', see Config)."

    proposers: tuple[tuple[str, dict], ...] | None  # None: Self-MoA on the default model
    aggregators: tuple[tuple[str, dict], ...] | None  # None: the default model

    def members(self, default_model: str) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
        """The proposers and aggregators a run calls, as (model name, options):
        the rule for none given is here only (3 samples of the default model
        propose, the default model aggregates)."""
        default = [(default_model, {})]
        return list(self.proposers or default * DEFAULT_SAMPLES), list(self.aggregators or default)

    @property
    def proposer_count(self) -> int:
        return len(self.proposers) if self.proposers else DEFAULT_SAMPLES

    @property
    def calls_per_prompt(self) -> int:
        """Calls one prompt costs when nothing fails and nothing is cut short:
        (layers - 1) x proposers, plus the aggregator's (none for a vote
        without a tie, one per window)."""
        steps = 0 if self.aggregate == "vote" else 1
        if self.window and self.proposer_count > self.window:
            steps += -(-(self.proposer_count - self.window) // (self.window - 1))
        return (self.layers - 1) * self.proposer_count + steps


def _field(name: str) -> tuple[str, Any, Any]:
    default = DEFAULTS.get(name)
    made = field(default_factory=dict) if isinstance(default, dict) else field(default=default)
    return ("aggregators" if name == "aggregator" else name, Any, made)


Config = make_dataclass(  # every option of MoaOptions, with its default filled in
    "Config", [_field(name) for name in MoaOptions.model_fields], bases=(_Config,), frozen=True
)
Config.__doc__ = (
    "Every option with its default filled in; passed whole from the engine to the calls."
)


def config_from(options: dict[str, Any] | MoaOptions) -> Config:
    """The run's configuration from raw option values (``-o`` strings, saved
    defaults, a preset) or validated options; a bad value raises ``MoaError``."""
    if not isinstance(options, MoaOptions):
        options = validate(options)
    given = {
        "aggregators" if key == "aggregator" else key: value
        for key, value in options
        if value is not None
    }
    for name in ("proposers", "aggregators"):
        if name in given:
            given[name] = tuple(_expand(given[name]))
    return Config(**given)


def validate(options: dict[str, Any]) -> MoaOptions:
    "MoaOptions from raw values; errors as one line (llm renders -o errors itself)."
    token = _OURS.set(True)
    try:
        return MoaOptions(**options)
    except ValidationError as ex:
        error = ex.errors()[0]  # always about one option
        raise MoaError(f"{', '.join(str(part) for part in error['loc'])}: {error['msg']}") from None
    finally:
        _OURS.reset(token)
