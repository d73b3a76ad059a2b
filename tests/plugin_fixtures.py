"""Helpers for the tests of real third-party plugins against stand-in servers
(each test file has the fixture that starts its server and points the plugin at it)."""

from __future__ import annotations

import json
import socket

from conftest import logged_json, run_llm


def closed_port() -> str:
    "The address of a port nothing listens on (connections are refused)."
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def moa(*args, input=None):
    return run_llm("-m", "moa-default", *args, input=input)


def record() -> dict:
    "The latest run's record."
    return logged_json()[0]["response_json"]["moa"]


def calls(run: dict) -> list[dict]:
    "Every call's record: the proposers of each layer, then the aggregator."
    proposers = [c for layer in run["proposer_layers"] for c in layer["proposers"]]
    return proposers + [run["aggregator"]]


def show_json() -> dict:
    result = run_llm("moa", "show", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)
