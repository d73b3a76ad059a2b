"""Run the real `llm` CLI in a real process, with the test fakes registered.

Used by tests that need a process of their own (signals, parallel runs) and by
the benchmarks: ``python tests/llm_with_fakes.py -m moa-default "hi"``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_models  # noqa: E402

fake_models.register()

from llm.cli import cli  # noqa: E402

if __name__ == "__main__":
    cli()
