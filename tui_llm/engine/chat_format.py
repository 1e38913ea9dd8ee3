"""Prompt formats a user can pick for a model whose GGUF carries no chat template.

llama-cpp-python silently falls back to "llama-2" in that case; we say so and let the user choose
(``--chat-format`` / the load settings). These are Jinja templates in the same form as the ones
GGUF files carry, so one code path renders both.
"""

from __future__ import annotations

DEFAULT_FALLBACK = "chatml"

BUILTIN_FORMATS: dict[str, str] = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llama-3": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
        "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
        "{% endif %}"
    ),
    "mistral-instruct": (
        "{{ bos_token }}{% set sys = namespace(text='') %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set sys.text = m['content'] + '\n\n' %}"
        "{% elif m['role'] == 'user' %}[INST] {{ sys.text }}{{ m['content'] }} [/INST]"
        "{% set sys.text = '' %}{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}"
        "{% endfor %}"
    ),
    "gemma": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}"
        "<start_of_turn>model\n{% else %}<start_of_turn>user\n{% endif %}"
        "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    "phi-3": (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    ),
    "plain": (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
        "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
        "{% else %}Assistant: {{ m['content'] }}\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}Assistant:{% endif %}"
    ),
}

STOP_STRINGS: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_end|>", "<|im_start|>"),
    "llama-3": ("<|eot_id|>",),
    "mistral-instruct": ("[INST]",),
    "gemma": ("<end_of_turn>",),
    "phi-3": ("<|end|>",),
    "plain": ("\nUser:",),
}


def format_names() -> tuple[str, ...]:
    """The names accepted by ``--chat-format``."""
    return tuple(BUILTIN_FORMATS)
