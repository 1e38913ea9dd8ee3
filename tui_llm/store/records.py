"""What the conversation store saves and returns, and the pure helpers around it.

The record types (``ConversationSummary``, ``StoredMessage``, ``StoredConversation``), the
``StoreError`` every store failure raises, ``auto_title``, and the conversions applied to values
on their way into and out of SQLite. Nothing here touches the database; ``conversations`` does.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from tui_llm.conversation import Conversation
from tui_llm.engine.protocol import ChatMessage, ReplyStats, SamplingParams

Role = Literal["system", "user", "assistant"]
StoreErrorKind = Literal["corrupt", "too_new", "busy", "missing", "io"]

TITLE_MAX_CHARS = 60
UNTITLED = "New conversation"
_ROLES: frozenset[str] = frozenset(get_args(Role))
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class StoreError(Exception):
    """The conversation store failed; ``str()`` is one line for the user, ``kind`` says why.

    Kinds: ``corrupt`` (damaged file; ``recover()`` helps), ``too_new`` (written by a newer
    tui-llm), ``busy`` (another process held the lock too long), ``missing`` (no such
    conversation or message), ``io`` (anything else: permissions, disk full).
    """

    def __init__(self, message: str, kind: StoreErrorKind = "io") -> None:
        super().__init__(" ".join(message.splitlines()))
        self.kind: StoreErrorKind = kind


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the conversation list."""

    id: int
    title: str
    created: float
    updated: float
    message_count: int
    model_path: str | None

    @property
    def model_name(self) -> str | None:
        """The model's file name, without its folder."""
        return _model_name(self.model_path)


@dataclass(frozen=True)
class StoredMessage:
    """One saved message; ``partial`` marks a reply that was stopped or interrupted."""

    id: int
    position: int
    role: Role
    content: str
    partial: bool
    stats: dict[str, Any] | None
    created: float
    reasoning: str = ""  # a reasoning model's thinking, apart from the answer in ``content``
    model_path: str | None = None  # the model that wrote a reply (None: not recorded)
    settings: dict[str, Any] | None = None  # a reply's sampling settings (``SamplingParams``)

    @property
    def model_name(self) -> str | None:
        """The file name of the model that wrote this reply."""
        return _model_name(self.model_path)

    def reply_stats(self) -> ReplyStats | None:
        """The stats as ``ReplyStats`` when they hold every field it needs (older saves lack
        the fields added since, which take their defaults)."""
        if self.stats is None:
            return None
        names = [f.name for f in dataclasses.fields(ReplyStats)]
        try:
            return ReplyStats(**{name: self.stats[name] for name in names if name in self.stats})
        except TypeError:
            return None


@dataclass(frozen=True)
class StoredConversation:
    """A saved conversation with its messages in order."""

    id: int
    title: str
    model_path: str | None
    system_prompt: str
    created: float
    updated: float
    messages: list[StoredMessage]
    custom_title: str | None = None  # the title the user gave; None: ``title`` is automatic

    @property
    def model_name(self) -> str | None:
        return _model_name(self.model_path)

    def to_conversation(self) -> Conversation:
        """The in-memory conversation to continue this one."""
        turns = [
            ChatMessage(message.role, message.content, message.reasoning)
            for message in self.messages
        ]
        return Conversation(system_prompt=self.system_prompt, turns=turns)


def auto_title(first_user_message: str | None) -> str | None:
    """The first non-blank line of the first user message, cut to ``TITLE_MAX_CHARS``."""
    for line in (first_user_message or "").splitlines():
        line = line.strip()
        if line:
            if len(line) <= TITLE_MAX_CHARS:
                return line
            return line[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    return None


def _model_name(model_path: str | None) -> str | None:
    return Path(model_path).name if model_path else None


def storable(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates (never typed, but possible) become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE_RE.sub("\ufffd", text)
    return text


def stats_json(stats: Mapping[str, Any] | ReplyStats | SamplingParams | None) -> str | None:
    """Stats or settings (a dataclass or a mapping) as compact JSON; ``None`` stays ``None``."""
    if stats is None:
        return None
    if isinstance(stats, (ReplyStats, SamplingParams)):
        stats = dataclasses.asdict(stats)
    return json.dumps(dict(stats), separators=(",", ":"))


def stats_from_json(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def check_role(role: str) -> None:
    if role not in _ROLES:
        raise ValueError(f"role must be one of {sorted(_ROLES)}, not {role!r}")
