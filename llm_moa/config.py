"""The options of a MoA model and their strict parsing into a ``RunConfig``.

Two stages, on purpose:

* ``MoaOptions`` (pydantic, shown by ``llm models --options``) only *normalises*:
  it turns ``"a,b"`` into a list, ``"3"`` into ``3`` and so on, and never rejects a
  value. The host prints pydantic errors over two lines, and a bad value must
  get one clear line.
* ``parse_config`` is the single strict check. It runs at the start of every
  run (and in ``llm moa save``), before any model is called, and raises
  ``MoaConfigError`` with one line naming the bad value and what is allowed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import llm
from pydantic import ConfigDict, Field, WithJsonSchema, field_validator
from typing_extensions import Annotated

MAX_LAYERS = 10
MAX_PROPOSERS = 128
MAX_RETRIES = 10
MAX_TIMEOUT = 86_400.0
MAX_NAME = 200
DEFAULT_SAMPLES = 3
DEFAULT_TIMEOUT = 300.0
DEFAULT_RETRIES = 1


class MoaConfigError(ValueError):
    """A bad option value. Its message is one line."""


def _loose(json_type: str) -> Any:
    "A field type that accepts anything but documents the type it expects."
    return Annotated[Optional[Any], WithJsonSchema({"type": json_type})]


class MoaOptions(llm.Options):
    # Unknown names pass through here so that parse_config can refuse them in
    # one line that lists the allowed names.
    model_config = ConfigDict(extra="allow")

    proposers: _loose("string") = Field(
        None,
        description=(
            "Proposer models by id or alias: 'a,b,c', 'a*3' for three samples, a JSON "
            'list of ids, or a JSON list of {"model": ID, "options": {...}}. '
            "Repeats allowed. Default: 3 samples of the default model (Self-MoA)."
        ),
    )
    aggregator: _loose("string") = Field(
        None,
        description=(
            "Aggregator model id or alias. 'a,b' tries b if a fails before "
            'answering. Also a JSON list of ids or {"model": ID, "options": {...}}. '
            "Default: the default model."
        ),
    )
    layers: _loose("integer") = Field(
        None,
        description=(
            "Layers, counted as in the paper: the aggregator's is the last. "
            "2 (default) = proposers then aggregator; 3 adds a round where "
            f"proposers see the first answers. {2}-{MAX_LAYERS}."
        ),
    )
    proposer_options: _loose("object") = Field(
        None,
        description='JSON options for every proposer, e.g. {"temperature": 0.7}.',
    )
    aggregator_options: _loose("object") = Field(
        None, description="JSON options for the aggregator."
    )
    aggregator_system: _loose("string") = Field(
        None,
        description="Replaces the built-in instruction that tells the aggregator "
        "how to synthesise the references.",
    )
    timeout: _loose("number") = Field(
        None,
        description=(
            f"Seconds one call may take, retries included (default {DEFAULT_TIMEOUT:g}; "
            "0 = no limit). A proposer past it is abandoned as timed out."
        ),
    )
    retries: _loose("integer") = Field(
        None,
        description=(
            f"Retries of a failing call, with exponential backoff (default "
            f"{DEFAULT_RETRIES}, max {MAX_RETRIES}). Missing keys, unknown models "
            "and invalid options are never retried."
        ),
    )
    min_proposers: _loose("integer") = Field(
        None,
        description="Quorum: fewer successful proposers than this in a layer "
        "ends the run with an error (default 1).",
    )
    max_concurrency: _loose("integer") = Field(
        None,
        description="Most calls in flight at once (default: all proposers of a "
        "layer). Use 1 for local models that share one machine.",
    )
    wait: _loose("integer") = Field(
        None,
        description="Aggregate as soon as this many proposers of a layer have "
        "answered; the rest are abandoned as skipped. Default: all.",
    )
    show_proposals: _loose("boolean") = Field(
        None,
        description="Also emit each layer's answers as reasoning before the "
        "final answer (shown dimmed while streaming, under ## Reasoning in logs).",
    )
    progress: _loose("boolean") = Field(
        None,
        description="Live progress on stderr when it is a terminal (default true).",
    )

    @field_validator("proposers", "aggregator", mode="before")
    @classmethod
    def _normalise_model_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith(("[", "{")):
                return _try_json(value)
            if "," in text:
                return [part.strip() for part in text.split(",")]
        return value

    @field_validator("proposer_options", "aggregator_options", mode="before")
    @classmethod
    def _normalise_object(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().startswith("{"):
            return _try_json(value)
        return value

    @field_validator("layers", "retries", "min_proposers", "max_concurrency", "wait", mode="before")
    @classmethod
    def _normalise_int(cls, value: Any) -> Any:
        try:
            return _as_int("", value)
        except MoaConfigError:
            return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _normalise_number(cls, value: Any) -> Any:
        try:
            return _as_number("", value)
        except MoaConfigError:
            return value

    @field_validator("show_proposals", "progress", mode="before")
    @classmethod
    def _normalise_bool(cls, value: Any) -> Any:
        try:
            return _as_bool("", value)
        except MoaConfigError:
            return value


OPTION_NAMES = tuple(MoaOptions.model_fields)


@dataclass(frozen=True)
class MemberSpec:
    "A model as the user named it, with its own options."

    model: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    proposers: tuple[MemberSpec, ...] | None = None  # None: Self-MoA default
    aggregators: tuple[MemberSpec, ...] | None = None  # None: the default model
    layers: int = 2
    proposer_options: dict = field(default_factory=dict)
    aggregator_options: dict = field(default_factory=dict)
    aggregator_system: str | None = None
    timeout: float | None = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    min_proposers: int = 1
    max_concurrency: int | None = None
    wait: int | None = None
    show_proposals: bool = False
    progress: bool = True

    @property
    def proposer_count(self) -> int:
        return len(self.proposers) if self.proposers else DEFAULT_SAMPLES

    @property
    def calls_per_prompt(self) -> int:
        "Calls one prompt costs when nothing fails: (layers - 1) x proposers + 1."
        return (self.layers - 1) * self.proposer_count + 1


def parse_config(options: dict[str, Any]) -> RunConfig:
    """Check every option strictly; raise ``MoaConfigError`` (one line) if bad."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise MoaConfigError(
            f"Unknown option {unknown[0]!r}; allowed: {', '.join(OPTION_NAMES)}"
        )
    get = {k: v for k, v in options.items() if v is not None}.get
    proposers = _parse_proposers(get("proposers"))
    config = RunConfig(
        proposers=proposers,
        aggregators=_parse_aggregators(get("aggregator")),
        layers=_int_in("layers", get("layers"), 2, 2, MAX_LAYERS),
        proposer_options=_parse_object("proposer_options", get("proposer_options")),
        aggregator_options=_parse_object("aggregator_options", get("aggregator_options")),
        aggregator_system=_parse_text("aggregator_system", get("aggregator_system")),
        timeout=_parse_timeout(get("timeout")),
        retries=_int_in("retries", get("retries"), DEFAULT_RETRIES, 0, MAX_RETRIES),
        min_proposers=_int_in("min_proposers", get("min_proposers"), 1, 1, MAX_PROPOSERS),
        max_concurrency=_optional_int("max_concurrency", get("max_concurrency"), MAX_PROPOSERS),
        wait=_parse_wait(get("wait")),
        show_proposals=_bool_or("show_proposals", get("show_proposals"), False),
        progress=_bool_or("progress", get("progress"), True),
    )
    n = config.proposer_count
    if config.min_proposers > n:
        raise MoaConfigError(
            f"min_proposers: {config.min_proposers} is more than the {n} proposers"
        )
    if config.wait is not None and config.wait > n:
        raise MoaConfigError(f"wait: {config.wait} is more than the {n} proposers")
    if config.wait is not None and config.wait < config.min_proposers:
        raise MoaConfigError(
            f"wait: {config.wait} is less than min_proposers ({config.min_proposers})"
        )
    return config


# --- helpers, each raising one line ---------------------------------------


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _try_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _load_json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise MoaConfigError(f"{name}: JSON is nested too deeply")
    except ValueError as ex:
        raise MoaConfigError(f"{name}: invalid JSON ({ex.args[0]}): {_show(text)}")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise MoaConfigError(f"{name}: expected a whole number, got {_show(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value) < 20:
        return int(value)
    raise MoaConfigError(f"{name}: expected a whole number, got {_show(value)}")


def _as_number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise MoaConfigError(f"{name}: expected a number, got {_show(value)}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and len(value) < 40:
        try:
            number = float(value)
        except ValueError:
            raise MoaConfigError(f"{name}: expected a number, got {_show(value)}")
    else:
        raise MoaConfigError(f"{name}: expected a number, got {_show(value)}")
    if not math.isfinite(number):
        raise MoaConfigError(f"{name}: expected a finite number, got {_show(value)}")
    return number


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise MoaConfigError(f"{name}: expected true or false, got {_show(value)}")


def _int_in(name: str, value: Any, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    number = _as_int(name, value)
    if not low <= number <= high:
        raise MoaConfigError(f"{name}: expected {low} to {high}, got {number}")
    return number


def _optional_int(name: str, value: Any, high: int) -> int | None:
    if value is None:
        return None
    return _int_in(name, value, 0, 1, high)


def _bool_or(name: str, value: Any, default: bool) -> bool:
    return default if value is None else _as_bool(name, value)


def _parse_timeout(value: Any) -> float | None:
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, str) and value.strip().lower() in ("none", "off"):
        return None
    seconds = _as_number("timeout", value)
    if seconds == 0:
        return None
    if not 0 < seconds <= MAX_TIMEOUT:
        raise MoaConfigError(
            f"timeout: expected seconds above 0 and at most {MAX_TIMEOUT:g} "
            f"(0 for no limit), got {_show(value)}"
        )
    return seconds


def _parse_wait(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    try:
        return _int_in("wait", value, 0, 1, MAX_PROPOSERS)
    except MoaConfigError:
        raise MoaConfigError(f"wait: expected 'all' or a number of proposers, got {_show(value)}")


def _parse_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MoaConfigError(f"{name}: expected text, got {_show(value)}")
    return value if value.strip() else None


def _parse_object(name: str, value: Any) -> dict:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = _load_json(name, value)
    if not isinstance(value, dict):
        raise MoaConfigError(f'{name}: expected a JSON object like {{"temperature": 0.7}}, got {_show(value)}')
    bad = [key for key in value if not isinstance(key, str) or not key]
    if bad:
        raise MoaConfigError(f"{name}: option names must be non-empty text, got {_show(bad[0])}")
    return dict(value)


def _model_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MoaConfigError(f"{name}: expected a model id or alias, got {_show(value)}")
    value = value.strip()
    if len(value) > MAX_NAME or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise MoaConfigError(f"{name}: not a valid model id or alias: {_show(value)}")
    return value


def _split_repeat(text: str) -> tuple[str, int]:
    "'gpt-4o*3' means three samples of gpt-4o."
    if "*" in text:
        name, _, count = text.rpartition("*")
        if count.strip().isdigit():
            return name, int(count)
    return text, 1


def _parse_proposers(value: Any) -> tuple[MemberSpec, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        value = _load_json("proposers", text) if text.startswith(("[", "{")) else text.split(",")
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, (tuple, list)):
        items = list(value)
    else:
        raise MoaConfigError(f"proposers: expected model ids or a JSON list, got {_show(value)}")
    if len(items) > MAX_PROPOSERS:
        raise MoaConfigError(f"proposers: at most {MAX_PROPOSERS} allowed, got {len(items)}")
    specs: list[MemberSpec] = []
    for item in items:
        specs.extend(_parse_member(item))
        if len(specs) > MAX_PROPOSERS:
            raise MoaConfigError(f"proposers: at most {MAX_PROPOSERS} allowed")
    if not specs:
        raise MoaConfigError("proposers: at least one model is required")
    return tuple(specs)


def _parse_member(item: Any, option: str = "proposers") -> list[MemberSpec]:
    if isinstance(item, str):
        name, count = _split_repeat(item.strip())
        if not 1 <= count <= MAX_PROPOSERS:
            raise MoaConfigError(f"{option}: repeat count must be 1 to {MAX_PROPOSERS}, got {_show(item)}")
        return [MemberSpec(_model_name(option, name))] * count
    if isinstance(item, dict):
        extra = sorted(set(item) - {"model", "options"}, key=str)
        if extra:
            raise MoaConfigError(
                f"{option}: unknown key {_show(extra[0])} in {_show(item)}; allowed: model, options"
            )
        if "model" not in item:
            raise MoaConfigError(f'{option}: each object needs a "model", got {_show(item)}')
        options = _parse_object(f"{option} options", item.get("options"))
        return [MemberSpec(_model_name(option, item["model"]), options)]
    raise MoaConfigError(
        f'{option}: each entry must be a model id or {{"model": ..., "options": {{...}}}}, got {_show(item)}'
    )


def _parse_aggregators(value: Any) -> tuple[MemberSpec, ...] | None:
    "One aggregator or a fallback list, in the same forms as proposers."
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        value = _load_json("aggregator", text) if text.startswith(("[", "{")) else text.split(",")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise MoaConfigError(f"aggregator: expected a model id or alias, got {_show(value)}")
    if len(value) > MAX_PROPOSERS:
        raise MoaConfigError(f"aggregator: at most {MAX_PROPOSERS} fallbacks, got {len(value)}")
    return tuple(spec for item in value for spec in _parse_member(item, "aggregator"))
