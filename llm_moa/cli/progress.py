"""Live progress of a run on stderr (README: "Seeing a run"): redrawn in place and
erased before the answer, so stdout carries the answer only.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import TextIO

from ..core.record import FAILED, OK, RUNNING, TIMEOUT, Call, Run
from ..text import shorten, visible

REFRESH = 0.1


class Progress:
    """The block on a terminal (the run's own copy of stderr), drawn and in the end
    erased by a thread of its own, the only one that writes it."""

    def __init__(self, run: Run, stream: TextIO):
        self.run = run
        self.stream = stream
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="moa-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        "Erase the block: returns once the thread has; safe to call more than once."
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        drawn = 0
        while not self._stop.wait(REFRESH):
            lines = self.lines()
            width = max(20, shutil.get_terminal_size().columns - 1)
            self.stream.write(
                _erase(drawn) + "".join(f"{shorten(line, width)}\n" for line in lines)
            )
            self.stream.flush()
            drawn = len(lines)
        self.stream.write(_erase(drawn))
        self.stream.flush()

    def lines(self) -> list[str]:
        "One line per call; model ids and errors made visible (they are not ours to send to the terminal)."
        now = time.monotonic() - self.start
        lines = [f"{self.run.moa_model}: {now:.1f}s"]
        for call in list(self.run.calls):
            where = "aggregator" if call.role == "aggregator" else f"layer {call.layer}"
            lines.append(f"  {where:<10} {call.member.model_id:<24} {call_state(call, now)}")
        return [visible(line, newlines=False) for line in lines]


def _erase(lines: int) -> str:
    "Back up over a block of that many lines and clear it."
    return f"\x1b[{lines}F\x1b[J" if lines else ""


def call_state(call: Call, now: float) -> str:
    if call.status == RUNNING:
        elapsed = now - (call.started or now)
        state = "answering" if call.first_token is not None else "running"
        retry = f" (retrying after: {call.error})" if call.error else ""
        return f"{state} {elapsed:.1f}s{retry}"
    took = f"{(call.ended or 0) - (call.started or 0):.1f}s"
    return {
        OK: f"done in {took}",
        FAILED: f"failed: {call.error}",
        TIMEOUT: f"timed out ({call.error})",
    }.get(call.status, call.status)  # waiting, skipped and cancelled read as they are
