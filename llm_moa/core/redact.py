"""Nothing secret is ever recorded: options whose names are credentials are
redacted, and error messages are scrubbed of the user's stored keys, of
credential-looking environment values and of anything shaped like a key,
before they are cut to length (``record.describe_error``)."""

from __future__ import annotations

import os
import re

# Option and variable names that hold credentials (max_tokens is not one).
SECRET_NAME = re.compile(
    r"api_?key|(^|[_-])key$|secret|passw|auth|credential|bearer|(^|[_-])token$", re.I
)
REDACTED = "[REDACTED]"
_KEY_SHAPES = [  # (pattern, replacement)
    (re.compile(r"\b(sk|pk|rk|gsk|xai|hf|ghp|gho|AIza)[-_][A-Za-z0-9_\-]{8,}"), REDACTED),
    (re.compile(r"\bAIza[A-Za-z0-9_\-]{20,}"), REDACTED),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-]{8,}"), REDACTED),
    (
        re.compile(  # keeps "key=" and redacts the value
            r"(?i)((?:api[_-]?)?key|token|secret|password|authorization)(\s*[=:]\s*)"
            r"(['\"]?)[A-Za-z0-9._\-/+]{8,}\3"
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"\b[A-Za-z0-9_\-]{40,}\b"), REDACTED),
]
MAX_KEY_LENGTH = 512  # longer option values are prose: only known secrets are looked for


def safe_options(options: dict, secrets: list[str] | None = None) -> dict:
    """Options as recorded: credential-named ones redacted, known secrets removed,
    and key-shaped text scrubbed in values short enough to be a key (a long
    value is prose, such as a prompt: scanning it for shapes cost 0.3 s a layer
    at 64 proposers of 20 KB)."""
    return {
        key: REDACTED
        if SECRET_NAME.search(key)
        else scrub(value, secrets, shapes=len(value) <= MAX_KEY_LENGTH)
        if isinstance(value, str)
        else value
        for key, value in options.items()
    }


def scrub(text: str, secrets: list[str] | None = None, shapes: bool = True) -> str:
    "Replace known secrets and (with ``shapes``) key-shaped strings with [REDACTED]."
    for secret in known_secrets() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    for shape, replacement in _KEY_SHAPES if shapes else ():
        text = shape.sub(replacement, text)
    return text


def known_secrets() -> list[str]:
    "Stored keys and credential-looking environment values, longest first."
    from .. import host

    values = [
        value for name, value in os.environ.items() if SECRET_NAME.search(name)
    ] + host.stored_keys()
    return sorted({value for value in values if len(value) >= 8}, key=len, reverse=True)
