"""Saved conversations (F3): search them as you type, open one (at the message that matched),
rename, export to Markdown or JSON, or delete."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Input, OptionList, Static

from tui_llm.screens.stored_list import StoredListScreen, local_minute
from tui_llm.store import ConversationStore, ConversationSummary, SearchHit, StoreError
from tui_llm.widgets.literal import literal, notify_literal

SHOWN_MAX_CHARS = 200  # a longer title or model name (a pasted page) is cut, with a marker
MATCH_STYLE = "bold reverse"
LISTED_MAX = 200
_HINT = (
    "type to search · Enter open · F2 rename · Ctrl+E export Markdown · Ctrl+X export JSON"
    " · Delete remove · Esc close"
)


@dataclass(frozen=True)
class HistoryPick:
    """The conversation to open, and the position of the message to show (``None``: its end)."""

    conversation_id: int
    position: int | None = None


def summary_prompt(summary: ConversationSummary) -> Content:
    """Two lines for one conversation: its title as typed, then when, how long, which model."""
    model = (
        Content(" · ") + literal(summary.model_name, max_chars=SHOWN_MAX_CHARS, one_line=True)
        if summary.model_name
        else Content()
    )
    return (
        literal(summary.title, max_chars=SHOWN_MAX_CHARS, one_line=True)
        + Content(f"\n  {local_minute(summary.updated)} · {summary.message_count} messages")
        + model
    )


def marked_line(line: str, spans: tuple[tuple[int, int], ...]) -> Content:
    """``line`` as literal text with the matching words (``spans``) highlighted."""
    content = Content()
    at = 0
    for start, end in spans:
        content += literal(line[at:start], max_chars=None, one_line=True)
        content += literal(line[start:end], style=MATCH_STYLE, max_chars=None, one_line=True)
        at = end
    return content + literal(line[at:], max_chars=None, one_line=True)


def hit_prompt(hit: SearchHit) -> Content:
    """A conversation found: its two lines, then where it matched and the line."""
    where = f"{hit.role}: " if hit.role else "title: "
    return (
        summary_prompt(hit.summary)
        + Content(f"\n  {where}").stylize("dim")
        + marked_line(hit.line, hit.spans)
    )


class HistoryScreen(StoredListScreen[HistoryPick]):
    """Newest first, or the search's results; returns the conversation (and message) to open.

    Exports go to ``export_dir`` (the folder tui-llm was started in) as new files, never over
    an old one; a one-line message says where.
    """

    BINDINGS = [
        Binding("escape,f3", "close", "Close"),
        Binding("f2", "rename", "Rename"),
        Binding("ctrl+e", "export('md')", "Export Markdown", priority=True),
        Binding("ctrl+x", "export('json')", "Export JSON", priority=True),
    ]

    def __init__(self, store: ConversationStore, export_dir: Path | None = None) -> None:
        super().__init__(
            title="Conversations",
            hint=_HINT,
            empty="No saved conversations yet.",
            list_id="conversations",
            load=self._find,
            prompt=lambda item: (
                hit_prompt(item) if isinstance(item, SearchHit) else (summary_prompt(item))
            ),
            delete=lambda item: store.delete_conversation(_summary(item).id),
            pick=lambda item: HistoryPick(
                _summary(item).id, item.position if isinstance(item, SearchHit) else None
            ),
            search_placeholder="Search every message…",
        )
        self.store = store
        self.export_dir = export_dir if export_dir is not None else Path.cwd()
        self._renaming: ConversationSummary | None = None

    def _find(self, query: str) -> list[ConversationSummary] | list[SearchHit]:
        if query.strip():
            return self.store.search(query, limit=LISTED_MAX)
        return self.store.list_conversations(limit=LISTED_MAX)

    # ---- rename -------------------------------------------------------------------------------

    def action_rename(self) -> None:
        """Edit the highlighted conversation's title in place (Enter saves, Esc cancels; an
        empty title goes back to the first line of the first message)."""
        item = self.highlighted_item
        if item is None or self._renaming is not None:
            return
        self._renaming = _summary(item)
        rename = Input(
            value=self._renaming.title,
            placeholder="Title (empty: the first line of the first message)",
            id="rename",
        )
        self.query_one(".hint", Static).display = False
        self.query_one("Vertical").mount(rename, before=self.query_one(".hint"))
        rename.focus()

    @on(Input.Submitted, "#rename")
    def save_title(self, event: Input.Submitted) -> None:
        event.stop()
        renaming = self._renaming
        if renaming is None:
            return
        try:
            self.store.set_title(renaming.id, event.value)
        except StoreError as exc:
            notify_literal(self, str(exc), severity="error")
        self._end_rename()

    def _end_rename(self) -> None:
        self._renaming = None
        index = self.query_one(OptionList).highlighted or 0
        for rename in self.query("#rename"):
            rename.remove()
        self.query_one(".hint", Static).display = True
        self._reload(keep_index=index)
        self.query_one(OptionList).focus()

    def action_close(self) -> None:
        if self._renaming is not None:
            self._end_rename()
            return
        super().action_close()

    # ---- export -------------------------------------------------------------------------------

    def action_export(self, format_name: str) -> None:
        """Write the highlighted conversation to a new file in ``export_dir``."""
        from tui_llm.store.transfer import file_name, to_json, to_markdown, write_new_file

        item = self.highlighted_item
        if item is None:
            return
        try:
            conversation = self.store.load(_summary(item).id)
            text = to_json(conversation) if format_name == "json" else to_markdown(conversation)
            path = write_new_file(self.export_dir, file_name(conversation, format_name), text)
        except StoreError as exc:
            notify_literal(self, str(exc), severity="error")
            return
        except OSError as exc:
            notify_literal(
                self,
                f"Cannot export to {self.export_dir}: {exc.strerror or exc}",
                severity="error",
            )
            return
        notify_literal(self, f"Exported “{conversation.title}” to {path}")


def _summary(item: ConversationSummary | SearchHit) -> ConversationSummary:
    return item.summary if isinstance(item, SearchHit) else item
