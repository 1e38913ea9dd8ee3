"""Which prompt format a model gets: its own template, the user's choice, or its family's."""

from __future__ import annotations

import pytest

from tui_llm.engine import chat_format
from tui_llm.engine.protocol import ChatMessage
from tui_llm.engine.templates import (
    TemplateError,
    choose_template,
    compile_error,
    detect_family,
    render,
)

GOOD = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
BROKEN = "{% for m in messages %}{{ m['content'] }}"


def tokens(*present: str):  # type: ignore[no-untyped-def]
    return lambda text: text in present


@pytest.mark.parametrize(
    ("architecture", "present", "expected"),
    [
        ("llama", ("<|start_header_id|>",), "llama-3"),
        ("llama", ("[INST]",), "mistral-instruct"),
        ("llama", (), None),
        ("gemma2", (), "gemma"),
        ("phi3", (), "phi-3"),
        ("qwen3", (), "chatml"),
        ("gemma3", ("<|im_start|>",), "chatml"),  # a token tells more than the architecture
    ],
)
def test_detect_family(architecture: str, present: tuple[str, ...], expected: str | None) -> None:
    found = detect_family(architecture, tokens(*present))
    assert (found[0] if found else None) == expected


def test_own_template_wins() -> None:
    chosen = choose_template(GOOD, None, "llama", tokens())
    assert (chosen.source, chosen.warning) == ("gguf", None)


def test_users_choice_wins_over_a_working_template() -> None:
    chosen = choose_template(GOOD, "gemma", "llama", tokens())
    assert (chosen.source, chosen.warning) == ("gemma", None)
    assert chosen.stops == chat_format.STOP_STRINGS["gemma"]


def test_broken_template_falls_back_to_the_family_with_a_one_line_warning() -> None:
    chosen = choose_template(BROKEN, None, "llama", tokens("<|start_header_id|>"))
    assert chosen.source == "llama-3"
    assert chosen.warning is not None and "\n" not in chosen.warning
    assert chosen.warning.startswith("the model's chat template does not compile (")
    assert compile_error(BROKEN) is not None and compile_error(GOOD) is None


def test_render_errors_are_one_template_error() -> None:
    with pytest.raises(TemplateError, match=r"^the chat template failed: boom$"):
        render("{{ raise_exception('boom') }}", [ChatMessage("user", "x")], "", "")
    with pytest.raises(TemplateError):
        render("{{ messages[5]['content'] + 1 }}", [ChatMessage("user", "x")], "", "")


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ messages.append(1) }}",
        "{{ range(10**9) | list | length }}",
    ],
)
def test_a_template_reaching_for_python_internals_fails_in_the_sandbox(template: str) -> None:
    """A GGUF's template is a program from a stranger: Jinja's immutable sandbox refuses
    attributes of Python internals, mutation and huge ranges, as one line."""
    with pytest.raises(TemplateError) as caught:
        render(template, [ChatMessage("user", "x")], "", "")
    message = str(caught.value)
    assert "\n" not in message
    assert "unsafe" in message or "sandbox" in message
