"""Opening a saved conversation: its messages as the chat shows them, and the line that says
which model will answer."""

from __future__ import annotations

from pathlib import Path

from tui_llm.config import model_file_identity
from tui_llm.store.records import StoredConversation
from tui_llm.textsafe import make_inert
from tui_llm.widgets.message_view import format_stats, thinking_title
from tui_llm.widgets.saved_message import MessageSpec


def history_specs(stored: StoredConversation) -> list[MessageSpec]:
    """The saved messages to show, oldest first (system messages are not shown)."""
    specs = []
    for message in stored.messages:
        if message.role == "system":
            continue
        stats = message.reply_stats()
        if stats is not None:
            line = format_stats(stats, "stopped" if message.partial else "stop")
            title: str | None = thinking_title(stats)
        else:
            line = "interrupted" if message.partial else ""
            title = None
        specs.append(MessageSpec(message.role, message.content, message.reasoning, line, title))
    return specs


def _name(path: str) -> str:
    return make_inert(Path(path).name, max_chars=200, one_line=True)


def resume_line(title: str, saved_with: str | None, loaded: str | None) -> tuple[str, bool]:
    """(what to say on opening a conversation, whether it is a warning).

    The loaded model carries on whatever the conversation was saved with: loading another model
    unasked would take seconds to minutes and drop the one the user chose (LM Studio and Open
    WebUI also answer an old chat with the model selected now), so the line says which model will
    answer instead, and how to change it.
    """
    opened = f"Opened “{make_inert(title, max_chars=200, one_line=True)}”."
    if loaded is None:
        if saved_with is None:
            return f"{opened} No model is loaded: load one (Ctrl+L) to carry on.", True
        return (
            f"{opened} Saved with {_name(saved_with)}; no model is loaded: load it or another "
            "(Ctrl+L) to carry on.",
            True,
        )
    if saved_with is None or model_file_identity(saved_with) == model_file_identity(loaded):
        return f"{opened} {_name(loaded)} sees the whole conversation.", False
    return (
        f"{opened} Saved with {_name(saved_with)}; {_name(saved_with)} is not loaded: replies "
        f"will come from {_name(loaded)} (Ctrl+L loads another model).",
        True,
    )
