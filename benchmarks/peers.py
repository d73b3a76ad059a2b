"""llm-moa side by side with its peers on one workload, in one run.

Three proposers (fake-a, fake-b, fake-c) and an aggregator (fake-c), every
call taking FAKE_MODELS_DELAY seconds (default 1.0), through:

* llm-moa: ``llm -m moa-default -o proposers ... -o aggregator ...``
* llm-consortium 0.8.0 (PyPI), installed by this script in a venv of its own
  under ~/.cache/llm-moa-bench (reused on later runs), saved as a consortium
  with one iteration, run with ``llm -m NAME``
* a naive loop: ``llm.get_model(m).prompt(q).text()`` for each proposer in
  turn, then the aggregator, in a fresh Python process

Every run is a fresh process through tests/llm_with_fakes.py, timed from start
to exit, plus the time to the first byte on stdout. The physical limit is one
proposer plus the aggregator.

    python benchmarks/peers.py [--repeats 3] [--delay 1.0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRAPPER = ROOT / "tests" / "llm_with_fakes.py"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llm-moa-bench"
CONSORTIUM_VENV = CACHE / "consortium-venv"
NAIVE = """
import sys
sys.path.insert(0, {tests!r})
import fake_models; fake_models.register()
import llm
question = "Why is the sky blue?"
answers = [llm.get_model(m).prompt(question).text() for m in ("fake-a", "fake-b", "fake-c")]
system = "Synthesise these answers:\\n" + "\\n".join(f"{{i}}. {{a}}" for i, a in enumerate(answers, 1))
for chunk in llm.get_model("fake-c").prompt(question, system=system):
    print(chunk, end="", flush=True)
print()
"""


def consortium_python() -> Path | None:
    python = CONSORTIUM_VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"Installing llm-consortium into {CONSORTIUM_VENV} (once) ...", file=sys.stderr)
    venv.create(CONSORTIUM_VENV, with_pip=True)
    # 0.8.0 imports scikit-learn when loaded, without depending on it
    result = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "llm==0.36",
            "llm-consortium==0.8.0",
            "scikit-learn",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
        shutil.rmtree(CONSORTIUM_VENV, ignore_errors=True)
        return None
    return python


def timed(args: list[str], env: dict) -> tuple[float, float, str]:
    start = time.monotonic()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = os.read(process.stdout.fileno(), 1)
    first_byte = time.monotonic() - start
    rest, err = process.communicate()
    total = time.monotonic() - start
    if process.returncode != 0:
        raise RuntimeError(f"{args[:4]} failed: {err.decode()[-500:]}")
    return total, first_byte, (first + rest).decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description="llm-moa vs llm-consortium vs a naive loop")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--delay", type=float, default=1.0)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="moa-peers-"))
    env = {
        **os.environ,
        "FAKE_MODELS_DELAY": str(args.delay),
        "FAKE_MODELS_NO_LOG": "1",
        "LLM_USER_PATH": str(home / "llm"),
        "HOME": str(home),
    }  # consortium writes under HOME
    # llm-consortium writes its own database and log under HOME, ignoring
    # LLM_USER_PATH, and fails on a machine where that folder does not exist yet
    (home / ".config" / "io.datasette.llm").mkdir(parents=True)
    question = "Why is the sky blue?"
    systems: dict[str, list[str]] = {
        "llm-moa (moa-default)": [
            sys.executable,
            str(WRAPPER),
            "-m",
            "moa-default",
            "-o",
            "proposers",
            "fake-a,fake-b,fake-c",
            "-o",
            "aggregator",
            "fake-c",
            question,
        ],
        "naive sequential loop": [sys.executable, "-c", NAIVE.format(tests=str(ROOT / "tests"))],
    }
    python = consortium_python()
    if python is not None:
        save = [
            str(python),
            str(WRAPPER),
            "consortium",
            "save",
            "bench",
            "-m",
            "fake-a",
            "-m",
            "fake-b",
            "-m",
            "fake-c",
            "--arbiter",
            "fake-c",
            "--max-iterations",
            "1",
            "--min-iterations",
            "1",
        ]
        subprocess.run(save, env=env, check=True, capture_output=True)
        systems["llm-consortium 0.8.0"] = [str(python), str(WRAPPER), "-m", "bench", question]
    startup = statistics.median(
        timed([sys.executable, str(WRAPPER), "--version"], env)[0] for _ in range(args.repeats)
    )
    limit = 2 * args.delay
    print(
        f"3 proposers + 1 aggregator, {args.delay:g} s per call, median of {args.repeats} fresh processes "
        f"(`llm --version` alone takes {startup:.2f} s here). Physical limit: {limit:.1f} s.\n"
    )
    print("| system | wall | wall − start-up | ratio to limit | first byte |")
    print("|---|---|---|---|---|")
    for name, command in systems.items():
        runs = [timed(command, env) for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        first = statistics.median(r[1] for r in runs)
        print(
            f"| {name} | {wall:.2f} s | {wall - startup:.2f} s | {(wall - startup) / limit:.2f} | {first:.2f} s |"
        )
    if python is None:
        print("\nllm-consortium could not be installed here; see the error above.")


if __name__ == "__main__":
    main()
