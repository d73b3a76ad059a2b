"""The strategy evidence table of the README, from `llm moa eval` results files.

    python benchmarks/strategies_table.py PROMPTS.jsonl RESULTS.eval.jsonl[,MORE.eval.jsonl] MODEL...

Unlike `llm moa eval`'s own report, which scores each model on the prompts
it was asked, this scores every model on the prompts that *all* the given
models answered, so an eval stopped part-way still compares like with like. Several results files may be given, comma-separated; for the same model
and prompt the later file wins. Grading is `--grade contains`.

Each model after the first is also compared with the first on the same
prompts: how many it got right that the first got wrong (+), the reverse (-),
and the exact two-sided sign-test p-value on those discordant prompts
(McNemar's test), which is sharper than comparing two intervals. For a cascade
preset (`moa-s-cascade`, 2 of 3 proposers first) the escalation rate is the
share of prompts that took more than 2 calls.
"""

import json
import sys
from math import comb

from llm_moa.eval.inputs import read_rows
from llm_moa.eval.report import grade, wilson


def sign_test(plus: int, minus: int) -> float:
    "Exact two-sided p-value of plus against minus under a fair coin."
    n = plus + minus
    tail = sum(comb(n, k) for k in range(min(plus, minus) + 1)) / 2**n if n else 1.0
    return min(1.0, 2 * tail)


def load_answers(results: str, failures: bool = False) -> dict[tuple[str, str], dict]:
    """Answered records by (model, prompt key), from comma-separated results
    files; later wins. With ``failures``, a failed answer too, unless one succeeded."""
    answers: dict[tuple[str, str], dict] = {}
    for name in results.split(","):
        for line in open(name, encoding="utf-8"):
            record = json.loads(line) if line.strip() else {}
            key = (record.get("model"), record.get("key"))
            if record.get("type") != "answer" or ("error" in record and not failures):
                continue
            if "error" not in record or "error" in answers.get(key, {"error": None}):
                answers[key] = record
    return answers


def main(prompts: str, results: str, *models: str) -> None:
    rows = read_rows(prompts)
    answers = load_answers(results)
    common = [row for row in rows if all((model, row.key) in answers for model in models)]
    print(f"{len(common)} of {len(rows)} prompts answered by every model\n")
    print(
        f"| model | accuracy (95% CI) | vs {models[0]}: +right / -wrong (p) | tokens / prompt | "
        "calls / prompt | latency s (mean) | escalated |"
    )
    print("|---|---|---|---|---|---|---|")
    first = None
    for model in models:
        got = [answers[(model, row.key)] for row in common]
        right = [grade("contains", a["text"], row.answer or "") for a, row in zip(got, common)]
        first = first or right
        low, high = wilson(sum(right), len(got))
        plus = sum(mine and not theirs for mine, theirs in zip(right, first))
        minus = sum(theirs and not mine for mine, theirs in zip(right, first))
        paired = (
            f"+{plus} / -{minus} (p={sign_test(plus, minus):.2f})" if right is not first else ""
        )
        tokens = sum(
            (a.get("input_tokens") or 0) + (a.get("output_tokens") or 0) for a in got
        ) / len(got)
        calls = sum(a.get("calls") or 1 for a in got) / len(got)
        latency = sum(a["duration_ms"] for a in got) / len(got) / 1000
        escalated = (
            f"{sum((a.get('calls') or 1) > 2 for a in got) / len(got):.0%}"
            if "cascade" in model
            else ""
        )
        print(
            f"| {model} | {sum(right)}/{len(got)} = {sum(right) / len(got):.2f} ({low:.2f}-{high:.2f}) | "
            f"{paired} | {tokens:,.0f} | {calls:.2f} | {latency:.1f} | {escalated} |"
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
