"""How often does `llm` lose a log row when many processes run at once?

Runs ROUNDS x PARALLEL real `llm` processes (through tests/llm_with_fakes.py)
against one LLM_USER_PATH, for a plain fake model and for moa-default, on a
fresh logs database, on one that was initialised first, on one in WAL mode,
and with one database per process (-d).
Counts answers printed, rows logged, non-zero exits and the errors seen.

    python benchmarks/parallel_logging.py [--parallel 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import collections
import os
import sqlite3
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRAPPER = ROOT / "tests" / "llm_with_fakes.py"


def llm(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(WRAPPER), *args], env=env, capture_output=True, text=True, timeout=120
    )


def one_round(model: str, setup: str, parallel: int) -> dict:
    user = Path(tempfile.mkdtemp(prefix="moa-par-"))
    env = {**os.environ, "LLM_USER_PATH": str(user)}
    llm(env, "models", "default", "fake-a")
    if setup in ("initialised", "wal"):
        llm(env, "-m", "fake-a", "warm up")
    if setup == "wal":
        conn = sqlite3.connect(user / "logs.db")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
    before = count_rows(user)
    extra = ["-o", "proposers", "fake-a,fake-b"] if model.startswith("moa-") else []

    def run(i: int) -> subprocess.CompletedProcess:
        database = ["-d", str(user / f"logs-{i}.db")] if setup == "per-process -d" else []
        return llm(env, "-m", model, *extra, *database, f"question {i}")

    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(run, range(parallel)))
    errors = collections.Counter(last_line(r.stderr) for r in results if r.returncode != 0)
    return {
        "answered": sum(f"question {i}" in r.stdout for i, r in enumerate(results)),
        "rows": count_rows(user) - before,
        "nonzero": sum(r.returncode != 0 for r in results),
        "errors": errors,
    }


def count_rows(user: Path) -> int:
    total = 0
    for path in user.glob("logs*.db"):
        try:
            conn = sqlite3.connect(path)
            try:
                total += conn.execute("select count(*) from turns").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error:
            pass
    return total


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:90] if lines else "(no stderr)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.rounds} rounds x {args.parallel} parallel processes\n")
    print("| model | logs.db | runs | answered | rows logged | non-zero exits |")
    print("|---|---|---|---|---|---|")
    all_errors: dict = {}
    for setup in ("fresh", "initialised", "wal", "per-process -d"):
        for model in ("fake-a", "moa-default"):
            total = collections.Counter()
            errors: collections.Counter = collections.Counter()
            for _ in range(args.rounds):
                result = one_round(model, setup, args.parallel)
                total.update({k: result[k] for k in ("answered", "rows", "nonzero")})
                errors.update(result["errors"])
            runs = args.rounds * args.parallel
            print(
                f"| {model} | {setup} | {runs} | {total['answered']} | {total['rows']} | {total['nonzero']} |"
            )
            all_errors[(model, setup)] = errors
    print()
    for (model, setup), errors in all_errors.items():
        for line, count in errors.most_common(4):
            print(f"- {model}, {setup}: {count} x {line}")


if __name__ == "__main__":
    main()
