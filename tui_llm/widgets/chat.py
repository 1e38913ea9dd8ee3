"""The conversation: one widget per message (``MessageView`` for those added since it opened).

A saved conversation is shown with one ``SavedMessage`` widget per message (its lines rendered
once, not a Markdown widget per paragraph), from its end: only its newest messages are mounted at
first, more a few at a time as the view nears either end of those, and the farthest unmounted
again, so that opening a thousand messages, or scrolling back through them, never holds the event
loop for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from tui_llm.widgets.literal import literal
from tui_llm.widgets.message_view import MessageView
from tui_llm.widgets.saved_message import MessageSpec, SavedMessage
from tui_llm.widgets.textline import TextLine

ChatMessage = MessageView | SavedMessage
"""A message in the chat: saved (drawn once) or added since the chat opened (may stream)."""


CUT_TEXT = "── earlier messages are not sent to the model: the context cannot hold them ──"


class ChatView(VerticalScroll):
    """The scrolling list of messages, mounted lazily (see the module docstring).

    A saved conversation is a window of mounted ``SavedMessage`` widgets with the messages
    before it (``unmounted_count``) and after it (``later_count``) kept as ``MessageSpec``: the
    window grows a few messages at a time towards whichever end the view nears, and past
    ``MOUNTED_LIMIT`` the messages farthest from the view are unmounted again, so every layout
    arranges a bounded number of widgets however far back the conversation goes. Messages added
    since it opened (``MessageView``, which may stream) follow the saved ones and stay mounted.

    Positions count every message shown, mounted or not, oldest first; ``mark_cut`` puts the
    context divider before the message at a position.
    """

    DEFAULT_CSS = """
    ChatView { height: 1fr; padding: 0 1; }
    /* A saved message's lines are rendered for a width: keep it when the scrollbar appears. */
    ChatView.-history { scrollbar-gutter: stable; }
    ChatView > .empty { color: $text-muted; padding: 1 2; }
    ChatView > .earlier, ChatView > .later { color: $text-muted; text-align: center; height: 1; }
    ChatView > .later { margin: 0 0 1 0; }
    ChatView > .context-cut {
        color: $warning; text-align: center; height: 1; margin: 0 0 1 0; text-style: bold;
    }
    """

    # Mounted when a conversation opens: enough to fill a tall terminal and some to scroll into.
    INITIAL_MESSAGES = 24
    # Mounted at a time as the view nears an end of the window (``reveal_earlier``'s default) ...
    REVEAL_BATCH = 10
    # ... in steps of this many, each laid out (and the view kept in place) before the next:
    # a step renders each message's Markdown once (about 2 ms for an answer with a list and a
    # code block on a loaded 2-core machine), so a short step keeps a frame short.
    REVEAL_STEP = 1
    # Saved messages mounted at most: every layout arranges each mounted widget (about 0.1 ms
    # apiece on that machine), and 40 messages are screens of text (more stay mounted while
    # they are not: only those three screens away from the view go).
    MOUNTED_LIMIT = 40

    def __init__(self, empty_text: str = "", id: str | None = None) -> None:
        super().__init__(id=id, can_focus=True)
        self._empty_text = empty_text
        self._unmounted: list[MessageSpec] = []  # saved messages before the window
        self._later: list[MessageSpec] = []  # saved messages after the window
        self._show_thinking = False
        self._cut: int | None = None
        self._revealing = False
        self._settling = False  # a new window waits for its first scroll (``_mount_window``)
        self._reveal_lock = asyncio.Lock()
        self._history_generation = 0  # a reveal step of an earlier history does nothing

    def compose(self) -> ComposeResult:
        yield TextLine(self._empty_text, classes="empty", hide_empty=False)

    def on_mount(self) -> None:
        self.watch(self, "scroll_y", self._near_edge, init=False)

    def set_empty_text(self, text: str) -> None:
        """The text shown while there are no messages (plain text: file names are not markup)."""
        self._empty_text = text
        for empty in self.query(".empty").results(TextLine):
            empty.show(text)

    async def add_message(
        self, role: str, content: str = "", reasoning: str = "", show_thinking: bool = False
    ) -> MessageView:
        await self.show_end()
        for empty in self.query(".empty"):
            await empty.remove()
        view = MessageView(role, content, reasoning, show_thinking)
        await self.mount(view)
        self.scroll_end(animate=False)
        return view

    async def show_history(self, specs: Sequence[MessageSpec], show_thinking: bool) -> None:
        """Replace the chat with saved messages, showing the end; earlier ones mount on demand."""
        await self.clear_messages()
        if not specs:
            return
        self._show_thinking = show_thinking
        self.add_class("-history")
        for empty in self.query(".empty"):
            await empty.remove()
        await self._mount_window(list(specs), max(0, len(specs) - self.INITIAL_MESSAGES))
        self.scroll_end(animate=False)
        self._reveal_after_refresh()

    def messages(self) -> list[ChatMessage]:
        """The mounted messages, oldest first (the newest are mounted unless the view was
        scrolled far back: ``later_count``)."""
        return [child for child in self.children if isinstance(child, MessageView | SavedMessage)]

    @property
    def unmounted_count(self) -> int:
        """Saved messages before the mounted ones."""
        return len(self._unmounted)

    @property
    def later_count(self) -> int:
        """Saved messages after the mounted ones (unmounted as the view went far back)."""
        return len(self._later)

    async def clear_messages(self) -> None:
        self._history_generation += 1
        self.workers.cancel_group(self, "reveal-earlier")
        self._revealing = False
        self._settling = False
        self._unmounted = []
        self._later = []
        self._cut = None
        self.remove_class("-history")
        for view in self._saved_views():
            view.release()
        await self.remove_children()
        await self.mount(TextLine(self._empty_text, classes="empty", hide_empty=False))

    async def show_end(self) -> None:
        """Mount the newest saved messages again if the view unmounted them going back."""
        if not self._later:
            return
        async with self._reveal_lock:
            if self._later:
                specs = self._saved_specs()
                await self._mount_window(specs, max(0, len(specs) - self.INITIAL_MESSAGES))
        self.scroll_end(animate=False)
        self._reveal_after_refresh()

    async def show_position(self, index: int) -> None:
        """Scroll so that the ``index``-th message (counting those not mounted) is at the top,
        mounting the messages from it on first."""
        hidden = len(self._unmounted)
        mounted = len(self._saved_views())
        if index < hidden and hidden - index + mounted <= self.MOUNTED_LIMIT:
            await self.reveal_earlier(hidden - index)
        elif index < hidden or hidden + mounted <= index < hidden + mounted + len(self._later):
            async with self._reveal_lock:
                await self._mount_window(self._saved_specs(), index)
        view = self._view_at(index)
        if view is not None:
            # Queued after the scroll to the end that mounting asked for, and done in that
            # callback (``immediate``): deferred once more, it would come after the release below,
            # which would then grow the window from the end and could unmount this very message.
            self.call_after_refresh(
                self.scroll_to_widget, view, animate=False, top=True, immediate=True
            )
        self._reveal_after_refresh()

    # ---- the context divider ------------------------------------------------------------------

    async def mark_cut(self, position: int | None) -> None:
        """Show the divider before the message at ``position`` (``None`` or 0: no divider)."""
        self._cut = position or None
        for divider in self.query_children(".context-cut"):
            await divider.remove()
        view = None if self._cut is None else self._view_at(self._cut)
        if view is not None:  # else an unmounted message: the divider comes with it
            await self.mount(self._divider(), before=view)

    @property
    def cut_shown(self) -> bool:
        """Whether the divider is on screen (mounted)."""
        return bool(self.query_children(".context-cut"))

    @staticmethod
    def _divider() -> Static:
        return Static(CUT_TEXT, markup=False, classes="context-cut")

    # ---- the window of mounted saved messages ------------------------------------------------

    def _saved_views(self) -> list[SavedMessage]:
        return [child for child in self.children if isinstance(child, SavedMessage)]

    def _saved_specs(self) -> list[MessageSpec]:
        """Every saved message, mounted or not, oldest first."""
        window = [view.spec for view in self._saved_views()]
        return self._unmounted + window + self._later

    def _view_at(self, position: int) -> ChatMessage | None:
        """The mounted message at ``position`` (counting every message); ``None``: unmounted."""
        index = position - len(self._unmounted)
        saved = self._saved_views()
        if index < 0:
            return None
        if index < len(saved):
            return saved[index]
        index -= len(saved) + len(self._later)
        added = [child for child in self.children if isinstance(child, MessageView)]
        return added[index] if 0 <= index < len(added) else None

    async def _mount_window(self, specs: list[MessageSpec], first: int) -> None:
        """Mount ``specs[first:first + INITIAL_MESSAGES]`` in place of the saved ones shown."""
        self._history_generation += 1
        self.workers.cancel_group(self, "reveal-earlier")
        self._revealing = False
        going = [
            child
            for child in self.children
            if isinstance(child, SavedMessage) or child.has_class("context-cut")
        ]
        for child in going:
            if isinstance(child, SavedMessage):
                child.release()
        await self.remove_children(going)
        first = max(0, min(first, len(specs) - 1))
        last = min(len(specs), first + self.INITIAL_MESSAGES)
        self._unmounted = specs[:first]
        self._later = specs[last:]
        await self._mount_specs(specs[first:last], first, before=self._first_added())
        await self._show_counts()
        # The view is not where the caller sends it until the next refresh: a scroll offset read
        # before then (0, at the top) would grow the window at the wrong end and unmount the
        # messages the view is going to. ``_reveal_after_refresh`` lifts this.
        self._settling = True
        if self._cut is not None and not self.cut_shown:
            await self.mark_cut(self._cut)

    def _first_added(self) -> MessageView | None:
        for child in self.children:
            if isinstance(child, MessageView):
                return child
        return None

    async def _mount_specs(
        self,
        specs: Sequence[MessageSpec],
        first_position: int,
        before: ChatMessage | None = None,
        after: ChatMessage | None = None,
    ) -> list[Static | SavedMessage]:
        widgets: list[Static | SavedMessage] = []
        for offset, spec in enumerate(specs):
            if self._cut is not None and self._cut == first_position + offset:
                for divider in self.query_children(".context-cut"):
                    divider.remove()
                widgets.append(self._divider())
            widgets.append(SavedMessage(spec, self._show_thinking))
        if before is not None:
            await self.mount_all(widgets, before=before)
        elif after is not None:
            await self.mount_all(widgets, after=after)
        else:
            await self.mount_all(widgets)
        return widgets

    async def _show_counts(self) -> None:
        """The lines that say how many saved messages are not mounted, above and below."""
        for classes, specs, text in (
            ("earlier", self._unmounted, "↑ {} earlier messages (scroll up to see them)"),
            ("later", self._later, "↓ {} later messages (scroll down to see them)"),
        ):
            lines = list(self.query_children(f".{classes}").results(Static))
            if not specs:
                for line in lines:
                    await line.remove()
                continue
            if lines:
                line = lines[0]
            else:
                line = Static("", markup=False, classes=classes)
                saved = self._saved_views()
                if classes == "earlier":
                    await self.mount(line, before=0)
                elif saved:
                    await self.mount(line, after=saved[-1])
                else:
                    await self.mount(line, before=self._first_added())
            line.update(literal(text.format(len(specs))))

    # ---- growing the window as the view nears its ends ---------------------------------------

    def _reveal_after_refresh(self) -> None:
        """Grow the window at its edges again once the scrolls queued before this call are done
        (``call_after_refresh`` runs callbacks in order, after the layout they need)."""
        generation = self._history_generation

        def release() -> None:
            if generation == self._history_generation and self._settling:
                self._settling = False
                self._near_edge()

        self.call_after_refresh(release)

    @property
    def revealing(self) -> bool:
        """The window of mounted messages is growing, or waits for the view to get where it was
        sent first: what is mounted may still change."""
        return self._revealing or self._settling

    def _near_edge(self, scroll_y: float | None = None) -> None:
        if self._revealing or self._settling or not self.is_attached:
            return
        height = self.size.height
        if self._unmounted and self.scroll_y < height:
            self._revealing = True
            self.run_worker(self._reveal_near_edge(self.reveal_earlier), group="reveal-earlier")
        elif (
            self._later
            and (saved := self._saved_views())
            and saved[-1].virtual_region.bottom < self.scroll_y + 2 * height
        ):
            self._revealing = True
            self.run_worker(self._reveal_near_edge(self.reveal_later), group="reveal-earlier")

    async def _reveal_near_edge(self, reveal: Callable[[], Awaitable[None]]) -> None:
        try:
            await reveal()
        finally:
            self._revealing = False
        self._near_edge()  # still near an end: the next batch

    async def reveal_earlier(self, count: int | None = None) -> None:
        """Mount up to ``count`` (``REVEAL_BATCH``) earlier messages above the first one, keeping
        what is on screen where it is; ``REVEAL_STEP`` at a time, each laid out before the next.

        Returns once they are mounted and laid out (or another history replaced this one)."""
        remaining = min(count or self.REVEAL_BATCH, len(self._unmounted))
        generation = self._history_generation
        while remaining > 0 and generation == self._history_generation and self._unmounted:
            async with self._reveal_lock:
                if generation != self._history_generation:
                    return
                take = min(self.REVEAL_STEP, remaining, len(self._unmounted))
                remaining -= take
                await self._step_up(take)

    async def reveal_later(self) -> None:
        """Mount up to ``REVEAL_BATCH`` of the later messages unmounted going back, below the
        last mounted one, ``REVEAL_STEP`` at a time."""
        remaining = min(self.REVEAL_BATCH, len(self._later))
        generation = self._history_generation
        while remaining > 0 and generation == self._history_generation and self._later:
            async with self._reveal_lock:
                if generation != self._history_generation:
                    return
                take = min(self.REVEAL_STEP, remaining, len(self._later))
                remaining -= take
                await self._step_down(take)

    async def _laid_out(self) -> None:
        """Wait until the chat has been laid out and drawn with what was just mounted."""
        done = asyncio.Event()
        self.call_after_refresh(done.set)
        await done.wait()

    async def _keep_in_place(self, anchor: Widget | None, anchor_y: int, scrolled: int = 0) -> None:
        """After a layout, scroll by however far ``anchor`` moved (content came or went above),
        less ``scrolled``: what was scrolled already for it."""
        await self._laid_out()
        if anchor is not None and anchor.is_attached:
            moved = anchor.virtual_region.y - anchor_y - scrolled
            if moved:
                self._shift(moved)

    def _shift(self, rows: int) -> None:
        """Scroll by ``rows`` at once; a scroll under way (a Page Up key's) goes on from there
        to where it was going, shifted as much."""
        animating = self.app.animator.is_being_animated(self, "scroll_y")
        target = self.scroll_target_y + rows
        self.scroll_to(y=self.scroll_y + rows, animate=False, immediate=True)
        if animating:
            self.scroll_to(y=target, immediate=True)

    def _scroll_for(self, widgets: Sequence[Widget], width: int) -> int:
        """Scroll down by the rows that ``widgets``, just mounted above the view, will take once
        laid out (a message's rows are known as soon as it is styled), so that the frame that
        shows them already shows the view where it was; the rows actually scrolled."""
        rows = 0
        for widget in widgets:
            height = widget.rows(width) if isinstance(widget, SavedMessage) else 1
            rows += height + widget.styles.margin.bottom
        before = self.scroll_y
        self._shift(rows)
        return round(self.scroll_y - before)

    async def _step_up(self, take: int) -> None:
        first_position = len(self._unmounted) - take
        batch = self._unmounted[first_position:]
        del self._unmounted[first_position:]
        views = self._saved_views()
        anchor = views[0] if views else None
        anchor_y = anchor.virtual_region.y if anchor is not None else 0
        generation = self._history_generation
        widgets = await self._mount_specs(
            batch, first_position, before=anchor or self._first_added()
        )
        if generation != self._history_generation:
            return  # another history replaced this one meanwhile
        await self._show_counts()
        scrolled = 0
        if anchor is not None and anchor.content_size.width > 0:
            scrolled = self._scroll_for(widgets, anchor.content_size.width)
        await self._keep_in_place(anchor, anchor_y, scrolled)
        # Far below the view: unmounted (nothing on screen moves).
        views = self._saved_views()
        keep_above = self.scroll_y + 3 * self.size.height
        trimmed: list[MessageSpec] = []
        while len(views) > self.MOUNTED_LIMIT and views[-1].virtual_region.y > keep_above:
            view = views.pop()
            trimmed.append(view.spec)
            await self._remove_with_divider(view)
        if trimmed:
            self._later[:0] = reversed(trimmed)
            await self._show_counts()

    async def _step_down(self, take: int) -> None:
        views = self._saved_views()
        if not views:
            return
        # The last mounted message stays where it is unless messages far above it go.
        anchor = views[-1]
        anchor_y = anchor.virtual_region.y
        batch = self._later[:take]
        del self._later[:take]
        await self._mount_specs(batch, len(self._unmounted) + len(views), after=anchor)
        await self._show_counts()
        # Far above the view: unmounted, and the view scrolled back by what they took.
        keep_below = self.scroll_y - 2 * self.size.height
        trimmed: list[MessageSpec] = []
        while (
            len(views) + len(batch) > self.MOUNTED_LIMIT
            and views[0].virtual_region.bottom < keep_below
        ):
            view = views.pop(0)
            trimmed.append(view.spec)
            await self._remove_with_divider(view)
        if trimmed:
            self._unmounted.extend(trimmed)
            await self._show_counts()
        await self._keep_in_place(anchor, anchor_y)

    async def _remove_with_divider(self, view: SavedMessage) -> None:
        """Unmount a saved message, and the divider before it (it comes back with it)."""
        children = list(self.children)
        index = children.index(view)
        if index > 0 and children[index - 1].has_class("context-cut"):
            await children[index - 1].remove()
        view.release()
        await view.remove()
