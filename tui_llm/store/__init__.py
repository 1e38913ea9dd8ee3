"""Conversations and offload sweeps saved in SQLite (WAL, ``PRAGMA user_version`` migrations,
one writer)."""

from __future__ import annotations

from tui_llm.store.conversations import DATABASE_NAME, ConversationStore, default_path
from tui_llm.store.records import (
    TITLE_MAX_CHARS,
    UNTITLED,
    ConversationSummary,
    Role,
    StoredConversation,
    StoredMessage,
    StoreError,
    StoreErrorKind,
    auto_title,
)
from tui_llm.store.search import SearchHit
from tui_llm.store.sweeps import StoredSweep, SweepStore, SweepSummary

__all__ = [
    "DATABASE_NAME",
    "TITLE_MAX_CHARS",
    "UNTITLED",
    "ConversationStore",
    "ConversationSummary",
    "Role",
    "SearchHit",
    "StoreError",
    "StoreErrorKind",
    "StoredConversation",
    "StoredMessage",
    "StoredSweep",
    "SweepStore",
    "SweepSummary",
    "auto_title",
    "default_path",
]
