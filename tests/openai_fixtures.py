"""Fixtures for tests against OpenAI-compatible servers (imported by conftest).

``openai_server`` runs ``openai_server.OpenAIServer`` for one test.
``srv_models`` registers ``srv-a``, ``srv-b`` and ``srv-c`` on it the way a user
would: an ``extra-openai-models.yaml`` in the llm user dir, and the key set
with the real ``llm keys set``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from openai_server import OpenAIServer

SRV_MODELS = ("srv-a", "srv-b", "srv-c")
KEY_NAME = "srv"
# A fake key; tests check that it reaches the server and nothing else.
KEY = "srvkey-7f3a9c1e5b2d8f4a6c0e"


def register_openai_models(
    user_path: Path,
    api_base: str,
    model_ids,
    key_name: str | None = KEY_NAME,
    model_name: str | None = None,
    **extra,
) -> None:
    """Write extra-openai-models.yaml registering ``model_ids`` against ``api_base``.

    Each model is asked for by its own id, or by ``model_name`` when given.
    """
    entries = []
    for model_id in model_ids:
        entry = {
            "model_id": model_id,
            "model_name": model_name or model_id,
            "api_base": api_base,
            **extra,
        }
        if key_name:
            entry["api_key_name"] = key_name
        entries.append(entry)
    (user_path / "extra-openai-models.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))


def set_key(name: str, value: str) -> None:
    from conftest import run_llm

    result = run_llm("keys", "set", name, "--value", value)
    assert result.exit_code == 0, result.output


@pytest.fixture
def openai_server():
    with OpenAIServer(SRV_MODELS) as server:
        yield server


@pytest.fixture
def srv_models(openai_server, user_path):
    "srv-a, srv-b and srv-c registered on the test server, with the key set through the CLI."
    register_openai_models(user_path, openai_server.url, SRV_MODELS)
    set_key(KEY_NAME, KEY)
    return openai_server
