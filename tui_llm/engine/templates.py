"""Chat templates in the engine: which one a model gets, checking it, and rendering a prompt.

A model's own template (``tokenizer.chat_template``) wins unless the user chose a format. A
template that does not compile, or a model without one, gets the format its family uses, told by
the GGUF's architecture or special tokens (``<|start_header_id|>`` is Llama 3, ``<start_of_turn>``
Gemma, ``[INST]`` Mistral, ``<|im_start|>`` ChatML); ChatML only when nothing tells. Runs in the
engine child; ``jinja2`` and ``llama_cpp`` are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tui_llm.engine import chat_format
from tui_llm.engine.protocol import ChatMessage

# Special tokens that name a family's prompt format, checked in this order.
FAMILY_TOKENS: tuple[tuple[str, str], ...] = (
    ("<|start_header_id|>", "llama-3"),
    ("<start_of_turn>", "gemma"),
    ("<|im_start|>", "chatml"),
    ("[INST]", "mistral-instruct"),
    ("<|assistant|>", "phi-3"),
)
# ``general.architecture`` values whose models use one format (llama.cpp's arch names).
FAMILY_ARCHITECTURES: dict[str, str] = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "phi3": "phi-3",
    "qwen2": "chatml",
    "qwen3": "chatml",
    "qwen3moe": "chatml",
    "llama4": "llama-3",
}


class TemplateError(Exception):
    """A chat template that fails to compile or to render; ``str()`` is one line."""


@dataclass(frozen=True)
class ChosenTemplate:
    """The template a loaded model is prompted with, where it came from, and any warning."""

    template: str
    source: str  # "gguf", or the name of a built-in format
    stops: tuple[str, ...]
    warning: str | None = None


def detect_family(architecture: str, has_token: Callable[[str], bool]) -> tuple[str, str] | None:
    """``(format name, what told it)`` for a model's family, or ``None`` when nothing tells."""
    for token, name in FAMILY_TOKENS:
        if has_token(token):
            return name, f"its {token} token"
    by_architecture = FAMILY_ARCHITECTURES.get(architecture)
    if by_architecture is not None:
        return by_architecture, f"its architecture ({architecture})"
    return None


def compile_error(template: str) -> str | None:
    """Why ``template`` does not compile as a chat template (one line), or ``None`` if it does."""
    import jinja2
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    try:
        Jinja2ChatFormatter(template=template, eos_token="", bos_token="")
    except jinja2.TemplateError as exc:
        return _one_line(exc)
    return None


def choose_template(
    gguf_template: str | None,
    chosen_format: str | None,
    architecture: str,
    has_token: Callable[[str], bool],
) -> ChosenTemplate:
    """The template to prompt a model with: the user's choice, its own, or its family's."""
    if chosen_format:
        problem = compile_error(gguf_template) if gguf_template else None
        warning = (
            f"the model's chat template does not compile ({problem}); using {chosen_format}"
            if problem
            else None
        )
        return _builtin(chosen_format, warning)
    if gguf_template:
        problem = compile_error(gguf_template)
        if problem is None:
            return ChosenTemplate(gguf_template, "gguf", ())
        why = f"the model's chat template does not compile ({problem})"
    else:
        why = "this model has no chat template"
    family = detect_family(architecture, has_token)
    if family is None:
        name = chat_format.DEFAULT_FALLBACK
        told = "nothing in the file tells its family"
    else:
        name, told = family
        told = f"{told} says {name}"
    return _builtin(name, f"{why}; {told}: using the {name} format (choose with --chat-format)")


def choose_for_model(llm: Any, chosen_format: str | None, architecture: str) -> ChosenTemplate:
    """``choose_template`` for a loaded ``Llama``: its GGUF template, and its special tokens
    asked through its own tokenizer."""
    from tui_llm.engine.reply import token_piece

    def has_token(text: str) -> bool:
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        return len(ids) == 1 and token_piece(llm, ids[0], special=True) == text.encode()

    return choose_template(
        llm.metadata.get("tokenizer.chat_template"), chosen_format, architecture, has_token
    )


def _builtin(name: str, warning: str | None) -> ChosenTemplate:
    return ChosenTemplate(
        chat_format.BUILTIN_FORMATS[name], name, chat_format.STOP_STRINGS.get(name, ()), warning
    )


def render(template: str, messages: Sequence[ChatMessage], bos_token: str, eos_token: str) -> str:
    """The prompt for ``messages``, ending with the assistant's turn; raises ``TemplateError``.

    A reply's thinking goes to the template as ``reasoning_content`` and ``thinking``: templates
    that know them (Qwen3's, gpt-oss's) keep or drop it per turn, the others never see it.
    """
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    chat: list[dict[str, str]] = []
    for message in messages:
        item = {"role": message.role, "content": message.content}
        if message.reasoning:
            item["reasoning_content"] = message.reasoning  # Qwen3's, DeepSeek's name
            item["thinking"] = message.reasoning  # gpt-oss's
        chat.append(item)
    try:
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos_token, bos_token=bos_token)
        response = formatter(messages=chat)  # type: ignore[arg-type]
    except Exception as exc:  # a template is a program: raise_exception, type errors, anything
        raise TemplateError(f"the chat template failed: {_one_line(exc)}") from exc
    return str(response.prompt)


@contextmanager
def tolerant_gguf_templates() -> Iterator[None]:
    """While ``Llama()`` loads, a GGUF template that does not compile is skipped, not fatal.

    llama-cpp-python compiles every template in the file into a chat handler inside ``Llama()``
    and lets a syntax error abort the load; the engine renders prompts itself (``render``), so
    those handlers are never used and a broken one may as well be an empty one.
    """
    import jinja2
    import llama_cpp.llama_chat_format

    llama_chat_format: Any = llama_cpp.llama_chat_format
    original = llama_chat_format.Jinja2ChatFormatter

    class Tolerant(original):  # type: ignore[misc, valid-type]
        def __init__(self, template: str, *args: Any, **kwargs: Any) -> None:
            try:
                super().__init__(template, *args, **kwargs)
            except jinja2.TemplateError:
                super().__init__("", *args, **kwargs)

    llama_chat_format.Jinja2ChatFormatter = Tolerant
    try:
        yield
    finally:
        llama_chat_format.Jinja2ChatFormatter = original


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
