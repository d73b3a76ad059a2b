"""What does moa-local cost next to one call of the same local model?

Runs the real `llm` CLI in subprocesses, on the real Gemma 3 270M model (the
`local` extra must be installed): REPEATS x `llm -m moa-local`, REPEATS x
one call of `gemma-3-270m-local` with the proposers' settings, and `llm
--version` for the start-up cost that every run pays. Fixed seeds make
the proposers repeat their answers; the aggregator's prompt carries a random
delimiter tag (see prompts.py), so its answer and length vary a little.
Prints the exact commands and a markdown table: median wall time, peak RSS of
the `llm` process, and the tokens the run logged.

    python benchmarks/local_model.py [--repeats 3] [--prompt "Why is the sky blue?"]

Each run gets a fresh LLM_USER_PATH; the model file is assembled once, before
any timing, into a shared LLM_MOA_MODELS_DIR, and one untimed warm-up run of
each command fills the OS page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Measured in a helper process, so RUSAGE_CHILDREN covers exactly one llm run.
MEASURE = """
import json, resource, subprocess, sys, time
start = time.monotonic()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.monotonic() - start
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall": wall, "peak_kb": peak_kb, "code": done.returncode,
                  "stdout": done.stdout, "stderr": done.stderr}))
"""


def commands(prompt: str) -> dict[str, list[str]]:
    llm = [sys.executable, "-m", "llm"]
    return {
        "moa-local (3 proposers + aggregator)": [
            *llm,
            "-m",
            "moa-local",
            "-o",
            "proposer_options",
            '{"max_tokens": 128, "seed": 1}',
            "-o",
            "aggregator_options",
            '{"temperature": 0.3, "seed": 1}',
            prompt,
        ],
        "gemma-3-270m-local (one call)": [
            *llm,
            "-m",
            "gemma-3-270m-local",
            "-o",
            "max_tokens",
            "128",
            "-o",
            "temperature",
            "0.8",
            "-o",
            "seed",
            "1",
            prompt,
        ],
        "llm --version (start-up only, no model)": [*llm, "--version"],
    }


def run_once(argv: list[str], env: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="moa-local-bench-") as user:
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, *argv],
            env={**env, "LLM_USER_PATH": user},
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout)
        if result["code"] != 0:
            raise SystemExit(f"{shlex.join(argv)} failed:\n{result['stderr']}")
        result.update(logged_usage(Path(user)))
    return result


def logged_usage(user: Path) -> dict:
    if not (user / "logs.db").exists():
        return {"input": "-", "output": "-", "calls": 0}
    conn = sqlite3.connect(user / "logs.db")
    try:
        row = conn.execute(
            "select input_tokens, output_tokens, token_details from turns"
        ).fetchone()
    finally:
        conn.close()
    details = json.loads(row[2]) if row[2] else {}
    return {"input": row[0], "output": row[1], "calls": details.get("moa_calls", 1)}


def prepare_models(env: dict) -> None:
    "Assemble the model file once, outside any timing."
    code = "from llm_moa.local import model_path, local_extra_installed as ok; assert ok(), 'install the local extra'; model_path()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import llama_cpp

    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"llama-cpp-python {llama_cpp.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt", default="Why is the sky blue?")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="moa-local-models-") as models:
        env = {**os.environ, "LLM_MOA_MODELS_DIR": models}
        prepare_models(env)
        rows = measure(commands(args.prompt), env, args.repeats)
    report(rows, args.repeats)


def measure(runs: dict[str, list[str]], env: dict, repeats: int) -> list[tuple[str, list[dict]]]:
    print(f"Machine: {machine()}\n")
    rows = []
    for name, argv in runs.items():
        print(f"    {shlex.join(['llm', *argv[3:]])}")
        run_once(argv, env)  # warm-up, not counted
        rows.append((name, [run_once(argv, env) for _ in range(repeats)]))
    return rows


def report(rows: list[tuple[str, list[dict]]], repeats: int) -> None:
    print(
        f"\n| run | calls | wall s (median of {repeats}) | peak RSS MB | input tokens | output tokens |"
    )
    print("|---|---|---|---|---|---|")
    for name, results in rows:
        last = results[-1]
        wall = statistics.median(r["wall"] for r in results)
        peak = max(r["peak_kb"] for r in results) / 1024
        print(
            f"| {name} | {last['calls']} | {wall:.2f} | {peak:.0f} | {last['input']} | {last['output']} |"
        )
    print(f"\nmoa-local answer: {rows[0][1][-1]['stdout'].strip()!r}")
    print(f"single answer:    {rows[1][1][-1]['stdout'].strip()!r}")


if __name__ == "__main__":
    main()
