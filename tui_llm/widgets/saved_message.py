"""A saved message in the chat as one widget: its lines rendered once per width and kept.

``MessageView`` is a Markdown widget per message, and Textual's Markdown is a widget per
paragraph, list item and code block: a reopened conversation of a thousand messages would be tens
of thousands of widgets that every layout arranges and every mount styles. A saved message does
not stream, so it is drawn the way Textual's ``Log`` draws its lines: the role line, the
thinking's title (and the thinking itself when open), the Markdown body (Rich's renderer, through
``literal_markdown``) and the figures line become strips once for a width, and ``render_line``
hands them out. Text in it can be selected with the mouse; a click on the thinking's title, or
F6 on the last one, opens or closes it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.console import RenderableType
from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from rich.theme import Theme
from textual import events
from textual.geometry import Size
from textual.selection import Selection
from textual.strip import Strip
from textual.widget import Widget

from tui_llm.textsafe import make_inert
from tui_llm.widgets.literal import literal_markdown, literal_text

ROLE_LABELS = {"user": "You", "assistant": "Assistant", "system": "System"}
COLLAPSED_SYMBOL = "▶"
EXPANDED_SYMBOL = "▼"


def role_label(role: str) -> str:
    """The line above a message: "You", "Assistant", or the role's own name."""
    return ROLE_LABELS.get(role, role.title())


@dataclass(frozen=True)
class MessageSpec:
    """A message to show that is not streaming: a saved one, with its figures line.

    ``stats_line`` is the line under it ("" for none); ``thinking_title`` the title of its
    thinking block (``None``: "Thinking").
    """

    role: str
    content: str
    reasoning: str = ""
    stats_line: str = ""
    thinking_title: str | None = None


class SavedMessage(Widget):
    """One saved message, drawn from strips rendered once per width (see the module docstring).

    ``role``, ``content`` and ``reasoning`` are as in ``MessageView`` (the texts made inert);
    ``spec`` is what it was made from, to unmount it and mount it again later.
    """

    COMPONENT_CLASSES = {
        "saved-message--role",
        "saved-message--thinking",
        "saved-message--stats",
        "saved-message--code",
    }

    DEFAULT_CSS = """
    SavedMessage {
        height: auto;
        margin: 0 0 1 0;
        padding: 0 1;
        border-left: thick $primary 50%;
    }
    SavedMessage.-user { border-left: thick $secondary; background: $boost; }
    SavedMessage.-system { border-left: thick $warning 50%; }
    SavedMessage.-error { border-left: thick $error; }
    SavedMessage > .saved-message--role { color: $text-muted; text-style: bold; }
    SavedMessage > .saved-message--thinking { color: $text-muted; text-style: italic; }
    SavedMessage > .saved-message--stats { color: $text-muted; }
    SavedMessage > .saved-message--code { color: $accent; background: $boost; }
    """

    def __init__(self, spec: MessageSpec, show_thinking: bool = False) -> None:
        super().__init__(classes=f"-{spec.role}")
        self.spec = spec
        self.role = spec.role
        self.content = make_inert(spec.content)
        self.reasoning = make_inert(spec.reasoning)
        self.stats_line = spec.stats_line
        self.thinking_title = spec.thinking_title or "Thinking"
        self.thinking_collapsed = not show_thinking
        self._strips: list[Strip] = []
        self._plain: list[str] = []
        self._rendered_width: int | None = None
        self._styled = False

    # ---- what the message looks like -----------------------------------------------------

    def toggle_thinking(self) -> bool:
        """Open or close the thinking block; ``False`` when this message has none."""
        if not self.reasoning:
            return False
        self.thinking_collapsed = not self.thinking_collapsed
        self._forget_render()
        return True

    def set_stats(self, text: str) -> None:
        """The line under the message (shown literally); "" for none."""
        self.stats_line = text
        self.spec = replace(self.spec, stats_line=text)
        self._forget_render()

    @property
    def thinking_row(self) -> int | None:
        """The content row of the thinking's title (a click there opens or closes it)."""
        return 1 if self.reasoning else None

    def rows(self, width: int) -> int:
        """How many rows the message takes ``width`` cells wide (rendered now if it was not)."""
        self._render_at(width)
        return len(self._strips)

    @property
    def text_lines(self) -> list[str]:
        """The message as shown at its current width, one string per row."""
        self._render_at(self.content_size.width)
        return list(self._plain)

    def _forget_render(self) -> None:
        self._rendered_width = None
        self.refresh(layout=True)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._rendered_width = None  # a new theme: new colours

    def _parts(self) -> list[RenderableType]:
        role_style = self._style("saved-message--role")
        muted = self._style("saved-message--stats")
        label = literal_text(role_label(self.role), max_chars=80, one_line=True)
        label.stylize(role_style)
        parts: list[RenderableType] = [label]
        code_theme = "monokai" if self.app.current_theme.dark else "default"
        if self.reasoning:
            symbol = COLLAPSED_SYMBOL if self.thinking_collapsed else EXPANDED_SYMBOL
            title = literal_text(f"{symbol} {self.thinking_title}", one_line=True)
            title.stylize(muted)
            parts.append(title)
            if not self.thinking_collapsed:
                thinking_style = self._style("saved-message--thinking")
                thinking = literal_markdown(self.reasoning, code_theme=code_theme)
                thinking.style = thinking_style
                parts.append(Padding(thinking, (0, 0, 1, 2)))
        if self.content:
            parts.append(literal_markdown(self.content, code_theme=code_theme))
        if self.stats_line:
            stats = literal_text(self.stats_line)
            stats.stylize(muted)
            parts.append(stats)
        return parts

    def _render_at(self, width: int) -> None:
        """Render every row for ``width`` cells, unless it already is."""
        if width == self._rendered_width or width <= 0:
            return
        console = self.app.console
        options = self.app.console_options.update(width=width, height=None, highlight=False)
        self._styled = True
        code = self._style("saved-message--code")
        theme = Theme({"markdown.code": code, "markdown.link": Style(underline=True)})
        lines = []
        with console.use_theme(theme):
            for part in self._parts():
                lines.extend(console.render_lines(part, options, pad=False, new_lines=False))
        base = self.rich_style
        # Only the finished strips are kept (each Strip carries its own caches: fewer objects
        # for the garbage collector to walk).
        strips = [
            Strip(line).extend_cell_length(width).apply_style(base).apply_offsets(0, y)
            for y, line in enumerate(lines)
        ]
        self._strips = strips
        self._plain = [strip.text.rstrip() for strip in strips]
        # Not styled yet (or no longer: removed while a reveal went on): not kept.
        self._rendered_width = width if self._styled else None

    def _style(self, component: str) -> Style:
        """A component class's style; a null one while the widget is not styled."""
        try:
            return self.get_component_rich_style(component, partial=True)
        except KeyError:
            self._styled = False
            return Style.null()

    # ---- Textual's side ------------------------------------------------------------------

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        self._render_at(width)
        return len(self._strips)

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        self._render_at(width)
        if not 0 <= y < len(self._strips):
            return Strip.blank(width, self.rich_style)
        strip = self._strips[y]
        selection = self.text_selection
        if selection is not None and (span := selection.get_span(y)) is not None:
            strip = self._highlight(strip, self._plain[y], span)
        return strip

    def _highlight(self, strip: Strip, plain: str, span: tuple[int, int]) -> Strip:
        start, end = span
        end = len(plain) if end == -1 else min(end, len(plain))
        if start >= end:
            return strip
        # Offsets count characters; cut the strip at the cells they fall on.
        cell_start = Text(plain[:start]).cell_len
        cell_end = Text(plain[:end]).cell_len
        selected = self.screen.get_component_rich_style("screen--selection")
        return Strip.join(
            [
                strip.crop(0, cell_start),
                Strip(Segment.apply_style(strip.crop(cell_start, cell_end), post_style=selected)),
                strip.crop(cell_end),
            ]
        )

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        return selection.extract("\n".join(self.text_lines)), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self.refresh()

    def release(self) -> None:
        """Drop every rendered line, this widget's and Textual's copy of them, before removing
        it: Textual 8 keeps a reference to each widget's line cache in a 1,024-entry
        ``lru_cache`` (``StylesCache.get_inner_outer`` caches on ``self``), so a removed message's
        lines, and the lines derived from them, would stay alive and be walked by every full
        garbage collection (hundreds of milliseconds after a minute of scrolling)."""
        self.refresh()  # clears Textual's cache of this widget's lines
        self.on_unmount()

    def on_unmount(self) -> None:
        # Unmounted far from the view: its lines go now, not when the collector finds the widget.
        self._strips = []
        self._plain = []
        self._rendered_width = None

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and offset.y == self.thinking_row:
            event.stop()
            self.toggle_thinking()
