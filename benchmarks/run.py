"""llm-moa performance benchmarks, with fake models of controlled latency.

    python benchmarks/run.py                 # every section
    python benchmarks/run.py overhead first-token import tail scale
    python benchmarks/run.py --quick ...     # fewer repeats

Sections:
  overhead     wall time / physical limit for 3, 8, 32 proposers x 2, 3 layers
  first-token  user's first chunk vs the aggregator's first chunk (CLI, sync, async)
  import       `llm --version` with and without the plugin loaded
  tail         one proposer 10x slower: wait=all vs wait=2
  scale        64 proposers x 3 layers of 20 KB answers; prompt building cost
The physical limit of a run is the slowest proposer of each layer plus the
aggregator: everything above it is the plugin's (and the host's) overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("LLM_USER_PATH", tempfile.mkdtemp(prefix="moa-bench-"))
os.environ["FAKE_MODELS_NO_LOG"] = "1"

import fake_models  # noqa: E402

fake_models.register()

import llm  # noqa: E402

WRAPPER = ROOT / "tests" / "llm_with_fakes.py"
MODELS = ["fake-a", "fake-b", "fake-c"]


def proposers_with(delays: list[float], **options) -> list[dict]:
    return [
        {"model": MODELS[i % 3], "options": {"delay": d, **options}} for i, d in enumerate(delays)
    ]


def spread(count: int, low: float = 0.2, high: float = 1.0) -> list[float]:
    "count latencies from low to high (the slowest is high)."
    if count == 1:
        return [high]
    return [round(low + (high - low) * i / (count - 1), 3) for i in range(count)]


def timed_run(**options) -> tuple[float, dict]:
    response = llm.get_model("moa-default").prompt("benchmark question", **options)
    start = time.perf_counter()
    response.text()
    return time.perf_counter() - start, response.json()["moa"]


# --- overhead -----------------------------------------------------------------


def bench_overhead(repeats: int) -> None:
    print("### Orchestration overhead\n")
    print(
        "Proposer latencies spread evenly from 0.2 s to 1.0 s, aggregator 0.2 s, Python API (sync), "
        f"median of {repeats} runs.\n"
    )
    print("| proposers | layers | calls | physical limit | wall | ratio | overhead per layer |")
    print("|---|---|---|---|---|---|---|")
    aggregator_delay = 0.2
    for count in (3, 8, 32):
        for layers in (2, 3):
            delays = spread(count)
            limit = (layers - 1) * max(delays) + aggregator_delay
            walls = [
                timed_run(
                    proposers=proposers_with(delays),
                    aggregator={"model": "fake-a", "options": {"delay": aggregator_delay}},
                    layers=layers,
                )[0]
                for _ in range(repeats)
            ]
            wall = statistics.median(walls)
            per_layer = (wall - limit) / layers * 1000
            print(
                f"| {count} | {layers} | {(layers - 1) * count + 1} | {limit:.3f} s | {wall:.3f} s | "
                f"{wall / limit:.4f} | {per_layer:.1f} ms |"
            )
    print()


# --- first token --------------------------------------------------------------

AGGREGATOR_STREAM = {"text": "alpha beta gamma delta epsilon zeta", "chunk_delay": 0.05}


def first_chunk_of_aggregator(user_path: Path) -> float:
    calls = fake_models.read_calls_at(user_path)
    return [c for c in calls if "<<<BEGIN ANSWER" in c["system"]][-1][
        "first_chunk"
    ]  # the aggregator: it gets the references


def bench_first_token(repeats: int) -> None:
    print("### First token\n")
    print(
        "Delay between the aggregator yielding its first chunk and the caller receiving it "
        f"(median of {repeats}; monotonic clock).\n"
    )
    print("| path | median | max |")
    print("|---|---|---|")
    options = dict(
        proposers=proposers_with([0.1, 0.1]),
        aggregator={"model": "fake-a", "options": AGGREGATOR_STREAM},
    )
    for label, runner in (
        ("CLI (`llm -m moa-default`, stdout pipe)", _first_token_cli),
        ("Python API, sync iteration", _first_token_sync),
        ("Python API, async iteration", _first_token_async),
    ):
        gaps = [runner(options) for _ in range(repeats)]
        print(f"| {label} | {statistics.median(gaps) * 1000:.2f} ms | {max(gaps) * 1000:.2f} ms |")
    print()


def _with_call_log(fn):
    "Run fn with the fakes' call log on, in a fresh user dir; return (result, dir)."
    user = Path(tempfile.mkdtemp(prefix="moa-ft-"))
    saved = {k: os.environ.get(k) for k in ("LLM_USER_PATH", "FAKE_MODELS_NO_LOG")}
    os.environ["LLM_USER_PATH"] = str(user)
    os.environ.pop("FAKE_MODELS_NO_LOG", None)
    try:
        return fn(user), user
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _first_token_sync(options: dict) -> float:
    def run(user):
        response = llm.get_model("moa-default").prompt("q", **options)
        received = None
        for _ in response:
            received = received or time.monotonic()
        return received

    received, user = _with_call_log(run)
    return received - first_chunk_of_aggregator(user)


def _first_token_async(options: dict) -> float:
    async def consume():
        response = llm.get_async_model("moa-default").prompt("q", **options)
        received = None
        async for _ in response:
            received = received or time.monotonic()
        return received

    received, user = _with_call_log(lambda user: asyncio.run(consume()))
    return received - first_chunk_of_aggregator(user)


def _first_token_cli(options: dict) -> float:
    import json

    def run(user):
        env = {**os.environ, "LLM_USER_PATH": str(user)}
        args = [
            sys.executable,
            str(WRAPPER),
            "-m",
            "moa-default",
            "-o",
            "proposers",
            json.dumps(options["proposers"]),
            "-o",
            "aggregator",
            json.dumps([options["aggregator"]]),
            "q",
        ]
        process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        os.read(process.stdout.fileno(), 1)
        received = time.monotonic()
        process.communicate()
        return received

    received, user = _with_call_log(run)
    return received - first_chunk_of_aggregator(user)


# --- import cost --------------------------------------------------------------


def bench_import(repeats: int) -> None:
    llm_bin = Path(sys.executable).with_name("llm")
    print("### Import cost\n")
    print(
        f"`llm --version`, alternating runs, {repeats} each: without plugins (`LLM_LOAD_PLUGINS=`) "
        "and with only llm-moa (`LLM_LOAD_PLUGINS=llm-moa`).\n"
    )
    times: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(repeats):
        for label, value in (("without", ""), ("with", "llm-moa")):
            env = {**os.environ, "LLM_LOAD_PLUGINS": value}
            start = time.perf_counter()
            subprocess.run([str(llm_bin), "--version"], env=env, check=True, capture_output=True)
            times[label].append(time.perf_counter() - start)
    without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
    print("| | median | min |")
    print("|---|---|---|")
    print(f"| without llm-moa | {without * 1000:.1f} ms | {min(times['without']) * 1000:.1f} ms |")
    print(f"| with llm-moa | {with_ * 1000:.1f} ms | {min(times['with']) * 1000:.1f} ms |")
    print(
        f"\nSlowdown: {(with_ / without - 1) * 100:+.2f} % (median), "
        f"{(min(times['with']) / min(times['without']) - 1) * 100:+.2f} % (min)."
    )
    own = _own_import_time()
    print(f"`python -X importtime`: importing `llm_moa` after `llm` takes {own} µs.\n")
    # Every command that resolves a model (any `llm -m X "..."`) also runs the
    # plugins' register_models hooks once: the plugin's share of that, too.
    code = (
        "import time, llm, llm.cli; t = time.perf_counter(); llm.get_models_with_aliases(); "
        "print(time.perf_counter() - t)"
    )
    firsts: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(repeats):
        for label, value in (("without", ""), ("with", "llm-moa")):
            env = {**os.environ, "LLM_LOAD_PLUGINS": value}
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
            )
            firsts[label].append(float(out.stdout))
    extra = (statistics.median(firsts["with"]) - statistics.median(firsts["without"])) * 1000
    print(
        f"First model resolution (`llm.get_models_with_aliases()`, paid by every `llm -m X` prompt): "
        f"{statistics.median(firsts['without']) * 1000:.1f} ms without, "
        f"{statistics.median(firsts['with']) * 1000:.1f} ms with llm-moa (+{extra:.1f} ms, median of {repeats}; "
        "an editable install adds its own import finder on top).\n"
    )


def _own_import_time() -> str:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import llm; import llm_moa"],
        capture_output=True,
        text=True,
    )
    for line in result.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "llm_moa":
            return parts[1]
    return "?"


# --- tail latency -------------------------------------------------------------


def bench_tail(repeats: int) -> None:
    print("### Tail latency: aggregate on the first k\n")
    delays = [0.2, 0.2, 0.2, 2.0]
    print(
        f"Four proposers at {delays} s (one 10x slower), aggregator 0.2 s, median of {repeats}.\n"
    )
    print("| wait | wall | proposers used | skipped |")
    print("|---|---|---|---|")
    for wait in ("all", 3, 2):
        results = [
            timed_run(
                proposers=proposers_with(delays),
                aggregator={"model": "fake-a", "options": {"delay": 0.2}},
                wait=wait,
            )
            for _ in range(repeats)
        ]
        wall = statistics.median(r[0] for r in results)
        layer = results[-1][1]["proposer_layers"][0]["proposers"]
        used = sum(p["status"] == "ok" for p in layer)
        skipped = sum(p["status"] == "skipped" for p in layer)
        print(f"| {wait} | {wall:.3f} s | {used} | {skipped} |")
    print()


# --- scale --------------------------------------------------------------------


def bench_scale(repeats: int) -> None:
    from llm_moa.core.prompts import reference_block

    print("### Scale\n")
    answer = ("lorem ipsum dolor sit amet " * 800)[:20_000]
    count, layers, delay = 64, 3, 0.2
    limit = (layers - 1) * delay + delay
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    walls = []
    for _ in range(repeats):
        wall, record = timed_run(
            proposers=proposers_with([delay] * count, text=answer, chunks=20),
            aggregator={"model": "fake-a", "options": {"delay": delay, "chunks": 20}},
            layers=layers,
        )
        walls.append(wall)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall = statistics.median(walls)
    print(
        f"{count} proposers x {layers} layers ({(layers - 1) * count + 1} calls), 20 KB answers, "
        f"{delay} s per call, median of {repeats}:\n"
    )
    print(
        f"- physical limit {limit:.3f} s, wall {wall:.3f} s, ratio {wall / limit:.4f}, "
        f"overhead per layer {(wall - limit) / layers * 1000:.1f} ms"
    )
    print(
        f"- peak RSS grew by {(after - before) / 1024:.1f} MB over {repeats} runs "
        f"(each run's aggregator prompt holds {count} x 20 KB = {count * 20 / 1000:.2f} MB of references)\n"
    )
    print(
        "Building the references block (one per layer, shared by every call of the next layer):\n"
    )
    print("| references of 20 KB | time | per reference |")
    print("|---|---|---|")
    for n in (8, 16, 32, 64, 128):
        answers = [answer] * n
        start = time.perf_counter()
        for _ in range(20):
            reference_block(answers)
        each = (time.perf_counter() - start) / 20
        print(f"| {n} | {each * 1000:.2f} ms | {each / n * 1e6:.1f} µs |")
    print()


SECTIONS = {
    "overhead": bench_overhead,
    "first-token": bench_first_token,
    "import": bench_import,
    "tail": bench_tail,
    "scale": bench_scale,
}
REPEATS = {"overhead": 3, "first-token": 10, "import": 20, "tail": 3, "scale": 3}


def main() -> None:
    parser = argparse.ArgumentParser(description="llm-moa benchmarks")
    parser.add_argument("sections", nargs="*", help=f"any of: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"llm {llm_version()}\n"
    )
    for name in args.sections or SECTIONS:
        repeats = max(1, REPEATS[name] // 3) if args.quick else REPEATS[name]
        SECTIONS[name](repeats)


def llm_version() -> str:
    from importlib.metadata import version

    return version("llm")


if __name__ == "__main__":
    main()
