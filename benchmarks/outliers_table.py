"""The README's outlier evidence table, from `llm moa eval` results files.

    python benchmarks/outliers_table.py PROMPTS.jsonl RESULTS.eval.jsonl[,MORE] \\
        HONEST_KEEP HONEST_DROP LIAR_KEEP LIAR_DROP

Scored like `strategies_table.py` (`--grade contains`), on the prompts that all
four presets were asked, with a failed answer counted as wrong, as `llm moa
eval` counts it: the presets are seeded, so a failure (the base model's empty
answer) repeats on every retry and is part of the preset's result. Each `drop` preset is paired with the `keep` preset of
the same panel: +right / -wrong and the exact sign-test p-value. Every row is
also paired with the honest `keep` panel, which shows what the deceptive
proposer costs and how much `drop` wins back.

The presets are seeded (see benchmarks/outliers_presets.sh), so a `drop` run
makes exactly the calls of its `keep` run unless the filter left an answer
out, and then its aggregator reads fewer input tokens: "left out" counts the
prompts where it did, of those both answered. Last, how many final answers
repeat the deceptive proposer's claim. Tokens, calls and latency are
per answered prompt.
"""

import sys

from strategies_table import load_answers, sign_test

from llm_moa.eval.run import grade, read_rows, wilson


def paired(mine: list[bool], theirs: list[bool]) -> str:
    plus = sum(a and not b for a, b in zip(mine, theirs))
    minus = sum(b and not a for a, b in zip(mine, theirs))
    return f"+{plus} / −{minus} (p={sign_test(plus, minus):.2f})"


def main(prompts: str, results: str, honest_keep, honest_drop, liar_keep, liar_drop) -> None:
    rows = read_rows(prompts)
    answers = load_answers(results, failures=True)
    models = [honest_keep, honest_drop, liar_keep, liar_drop]
    common = [row for row in rows if all((m, row.key) in answers for m in models)]
    got = {m: [answers[(m, row.key)] for row in common] for m in models}
    right = {
        m: [
            "error" not in a and grade("contains", a["text"], row.answer or "")
            for a, row in zip(got[m], common)
        ]
        for m in models
    }
    print(f"{len(common)} of {len(rows)} prompts asked of every preset\n")
    print(
        "| panel | outliers | accuracy (95% CI) | drop vs keep: +right / −wrong (p) | "
        "vs honest keep (p) | left out | failed | tokens / prompt | calls / prompt | latency s (mean) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model, panel, mode, keep in (
        (honest_keep, "3 Gemma", "keep", None),
        (honest_drop, "3 Gemma", "drop", honest_keep),
        (liar_keep, "3 Gemma + 1 deceptive", "keep", None),
        (liar_drop, "3 Gemma + 1 deceptive", "drop", liar_keep),
    ):
        n, hits = len(common), sum(right[model])
        low, high = wilson(hits, n)
        both = [
            (mine, theirs)
            for mine, theirs in zip(got[model], got[keep or model])
            if "error" not in mine and "error" not in theirs
        ]
        left_out = sum(
            mine["billed"][-1]["usage"]["input"] < theirs["billed"][-1]["usage"]["input"]
            for mine, theirs in both
        )
        answered = [a for a in got[model] if "error" not in a]
        failed = n - len(answered)
        tokens = sum(a["input_tokens"] + a["output_tokens"] for a in answered) / len(answered)
        calls = sum(a["calls"] for a in answered) / len(answered)
        latency = sum(a["duration_ms"] for a in answered) / len(answered) / 1000
        print(
            f"| {panel} (`{model}`) | {mode} | {hits}/{n} = {hits / n:.2f} ({low:.2f}-{high:.2f}) | "
            f"{paired(right[model], right[keep]) if keep else ''} | "
            f"{paired(right[model], right[honest_keep]) if model != honest_keep else ''} | "
            f"{f'{left_out}/{len(both)}' if keep else ''} | {failed} | {tokens:,.0f} | {calls:.2f} | {latency:.1f} |"
        )

    copied = {
        m: sum("atlantis" in (a.get("text") or "").casefold() for a in got[m]) for m in models
    }
    print(
        "\nFinal answers that repeat the deceptive answer's claim (Atlantis): "
        + ", ".join(f"{m} {copied[m]}" for m in models)
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
