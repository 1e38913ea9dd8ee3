"""Full-text search of saved conversations: the words of a query, the FTS5 query they make, and
the line of a message that matched, with where the words are in it.

Words are what SQLite's ``unicode61`` tokenizer sees (``migrations._V4``): runs of Unicode letters
and digits (see ``_is_word_char``), compared without case or diacritics. ``snake_case`` is the two
words ``snake`` and ``case``; a query with no word in it (``%``, ``?!``) matches nothing. Every
word must appear in the message (in any order); the last is a prefix while it is being typed
(``kube`` finds ``Kubernetes``) unless the query ends in a space, or it is one letter long (a
one-letter prefix matches most of a database, and would be slow to find).
"""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tui_llm.store.records import ConversationSummary, Role

LINE_MAX_CHARS = 160  # the part of a long matching line that is shown, around the first match
_PREFIX_MIN_CHARS = 2  # as the index's smallest prefix (``prefix='2 3'``)


@dataclass(frozen=True)
class Query:
    """The words of a search as typed and folded (lower case, no diacritics; for finding them
    in a line), and whether the last one is a prefix."""

    typed: tuple[str, ...]
    words: tuple[str, ...]
    last_is_prefix: bool

    def fts(self) -> str:
        """The FTS5 query: every word as typed, quoted (words hold no quote), the last maybe a
        prefix. SQLite splits and folds each quoted word itself, as it did the messages, so a
        character whose Unicode class or case differs in SQLite's tables still matches."""
        quoted = [f'"{word}"' for word in self.typed]
        if self.last_is_prefix:
            quoted[-1] += "*"
        return " ".join(quoted)

    def matches(self, folded_word: str) -> bool:
        """Whether a folded word of the text is one of the query's words."""
        if folded_word in self.words:
            return True
        return self.last_is_prefix and folded_word.startswith(self.words[-1])

    def found_in(self, folded_words: set[str]) -> bool:
        """Whether every word of the query is among ``folded_words`` (the last as a prefix)."""
        *whole, last = self.words
        if any(word not in folded_words for word in whole):
            return False
        if last in folded_words:
            return True
        return self.last_is_prefix and any(word.startswith(last) for word in folded_words)


@dataclass(frozen=True)
class SearchHit:
    """One conversation found: where it matched first (its newest matching message, or its
    title), that line, and the character offsets of the matching words in ``line``.

    ``position`` and ``message_id`` are ``None`` when the title matched; ``line`` is one line,
    at most ``LINE_MAX_CHARS`` (a cut end is marked ``…``)."""

    summary: ConversationSummary
    message_id: int | None
    position: int | None
    role: Role | None
    line: str
    spans: tuple[tuple[int, int], ...]


def _is_word_char(char: str) -> bool:
    """As ``unicode61`` splits: letters, digits, private use, combining marks (dropped by the
    fold), and what its Unicode 6.1 tables do not know (Python's unassigned). A symbol assigned
    since 6.1 (a newer emoji) is inside a word there and between words here: such a word is
    found, but its line is shown without the match marked."""
    category = unicodedata.category(char)
    return category[0] in "LN" or category in ("Co", "Mn", "Cn")


def fold(word: str) -> str:
    """A word as the index compares it: lower case, without diacritics."""
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn").lower()


def words_with_offsets(text: str) -> list[tuple[int, int]]:
    """Where each word of ``text`` starts and ends (character offsets)."""
    found: list[tuple[int, int]] = []
    start: int | None = None
    for index, char in enumerate(text):
        if _is_word_char(char):
            if start is None:
                start = index
        elif start is not None:
            found.append((start, index))
            start = None
    if start is not None:
        found.append((start, len(text)))
    return found


def parse_query(text: str) -> Query | None:
    """The query typed as ``text``; ``None`` when it has no word to search for."""
    typed = tuple(text[start:end] for start, end in words_with_offsets(text))
    pairs = [(word, fold(word)) for word in typed if fold(word)]
    if not pairs:
        return None
    typing = not text[-1:].isspace() and _is_word_char(text[-1])
    words = tuple(folded for _, folded in pairs)
    return Query(
        tuple(word for word, _ in pairs), words, typing and len(words[-1]) >= _PREFIX_MIN_CHARS
    )


def matching_line(text: str, query: Query) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The line of ``text`` holding most of the query's words, cut to ``LINE_MAX_CHARS`` around
    its first match, and the offsets of the matching words in what is returned.

    Without any matching word (a fold that differs from SQLite's), the first non-blank line and
    no spans."""
    best_line = ""
    best_spans: list[tuple[int, int]] = []
    best_score = 0
    for line in text.splitlines():
        spans = [
            (start, end)
            for start, end in words_with_offsets(line)
            if query.matches(fold(line[start:end]))
        ]
        score = len({fold(line[s:e]) for s, e in spans})
        if score > best_score:
            best_line, best_spans, best_score = line, spans, score
            if score == len(query.words):
                break
    if best_score == 0:
        first = next((line for line in text.splitlines() if line.strip()), "")
        return _cut(first.strip(), [])
    return _cut(best_line, best_spans)


def _cut(line: str, spans: list[tuple[int, int]]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """``line`` in at most ``LINE_MAX_CHARS``, keeping the first span in view."""
    if len(line) <= LINE_MAX_CHARS:
        return line, tuple(spans)
    first = spans[0][0] if spans else 0
    start = max(0, min(first - LINE_MAX_CHARS // 4, len(line) - LINE_MAX_CHARS + 1))
    head = "…" if start > 0 else ""
    room = LINE_MAX_CHARS - len(head) - 1
    body = line[start : start + room]
    tail = "…" if start + room < len(line) else ""
    shift = len(head) - start
    kept = tuple(
        (max(s + shift, len(head)), min(e + shift, len(head) + len(body)))
        for s, e in spans
        if s + shift < len(head) + len(body) and e + shift > len(head)
    )
    return head + body + tail, kept


def find_conversations(
    db: sqlite3.Connection,
    query: Query,
    limit: int,
    summaries: Callable[[Sequence[int]], dict[int, ConversationSummary]],
) -> list[SearchHit]:
    """Up to ``limit`` conversations matching ``query``: those whose own title matches first
    (most recently changed first), then by their newest matching message, newest first.

    Reads the index newest message first and stops at ``limit`` conversations, so a common
    word costs about as much as a rare one. ``summaries`` gives the listed rows by id.
    """
    hits: list[tuple[int, int | None]] = []  # (conversation id, message id or None)
    seen: set[int] = set()
    like = [f"%{word}%" for word in query.words]
    titled = db.execute(
        "SELECT id, title FROM conversations WHERE title IS NOT NULL"
        + "".join(" AND title LIKE ?" for _ in like)
        + " ORDER BY updated DESC, id DESC",
        like,
    )
    for conversation_id, title in titled:
        if len(hits) >= limit:
            break
        folded = {fold(title[s:e]) for s, e in words_with_offsets(title)}
        if query.found_in(folded):
            hits.append((conversation_id, None))
            seen.add(conversation_id)
    if len(hits) < limit:
        matched = db.execute(
            "SELECT messages_fts.rowid, m.conversation_id FROM messages_fts"
            " CROSS JOIN messages AS m ON m.id = messages_fts.rowid"
            " WHERE messages_fts MATCH ? ORDER BY messages_fts.rowid DESC",
            (query.fts(),),
        )
        for message_id, conversation_id in matched:
            if conversation_id not in seen:
                seen.add(conversation_id)
                hits.append((conversation_id, message_id))
                if len(hits) >= limit:
                    break
        matched.close()
    by_id = summaries([conversation_id for conversation_id, _ in hits])
    found: list[SearchHit] = []
    for conversation_id, message_id in hits:
        summary = by_id[conversation_id]
        if message_id is None:
            line, spans = matching_line(summary.title, query)
            found.append(SearchHit(summary, None, None, None, line, spans))
            continue
        position, role, content = db.execute(
            "SELECT position, role, content FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        line, spans = matching_line(content, query)
        found.append(SearchHit(summary, message_id, position, role, line, spans))
    return found
