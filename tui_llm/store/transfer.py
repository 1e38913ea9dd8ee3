"""A saved conversation out as Markdown or JSON, and back in from JSON.

**JSON** (``FORMAT``, version ``FORMAT_VERSION``) holds everything the store keeps, losslessly: the
title the user gave (``null``: automatic), the conversation's model and system prompt, its start
and last change (seconds since the epoch), and each message's role, text, thinking, partial flag,
time, model, sampling settings and stats. Database ids are left out (another database assigns its
own), so export -> import -> export gives the same bytes. Keys are written in a fixed order,
UTF-8, two-space indent, one newline at the end.

**Import** validates the whole file first (``TransferError``, one line naming what is wrong and
where) and saves in one transaction. Importing a conversation that is already saved, identical
(same start time and the same export), saves nothing and reports the existing one: import is a
restore, and running a restore script twice must not double every conversation. A conversation
continued after it was exported differs, and is imported as a new one beside it.

**Markdown** is for reading: a heading per message with its role and time; a reply also gives
its model, sampling settings and speed; thinking sits in a collapsed ``<details>``. Message text
stays Markdown (a reply's lists and code render), contained so that it cannot break the page: a
code fence left open is closed at the end of its message, and ``<`` outside code is written as
``&lt;``, so no ``</details>``, ``<!--`` or ``<script>`` in a message is read as HTML.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from tui_llm.store.conversations import ConversationStore
from tui_llm.store.records import (
    UNTITLED,
    Role,
    StoredConversation,
    StoredMessage,
    auto_title,
)

FORMAT = "tui-llm-conversation"
FORMAT_VERSION = 1
_ROLES: tuple[str, ...] = get_args(Role)
_ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


class TransferError(ValueError):
    """A file that cannot be imported; ``str()`` is one line saying what and where."""


# ---- JSON ---------------------------------------------------------------------------------------


def to_json(conversation: StoredConversation) -> str:
    """The conversation as this module's JSON document (see the module docstring)."""
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "title": conversation.custom_title,
        "model_path": conversation.model_path,
        "system_prompt": conversation.system_prompt,
        "created": float(conversation.created),
        "updated": float(conversation.updated),
        "messages": [
            {
                "role": message.role,
                "content": message.content,
                "reasoning": message.reasoning,
                "partial": message.partial,
                "created": float(message.created),
                "model_path": message.model_path,
                "settings": message.settings,
                "stats": message.stats,
            }
            for message in conversation.messages
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def from_json(text: str | bytes) -> StoredConversation:
    """The conversation in a JSON document (ids 0: not saved yet); raises ``TransferError``."""
    try:
        document = json.loads(text)
    except UnicodeDecodeError as exc:
        raise TransferError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        raise TransferError(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise TransferError("not a tui-llm conversation (the file is not a JSON object)")
    if document.get("format") != FORMAT:
        found = document.get("format")
        raise TransferError(
            f'not a tui-llm conversation ("format" is {_shown(found)}, not "{FORMAT}")'
            if "format" in document
            else 'not a tui-llm conversation (no "format" key)'
        )
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TransferError(f'"version" must be a whole number from 1, not {_shown(version)}')
    if version > FORMAT_VERSION:
        raise TransferError(
            f"written by a newer tui-llm (format version {version}; this one reads"
            f" {FORMAT_VERSION})"
        )
    created = _number(document, "created", "", default=time.time())
    raw_messages = document.get("messages")
    if not isinstance(raw_messages, list):
        raise TransferError(f'"messages" must be a list, not {_shown(raw_messages)}')
    messages = [
        _message(raw, f"messages[{index}]", position=index, default_created=created)
        for index, raw in enumerate(raw_messages)
    ]
    custom_title = _optional_text(document, "title", "")
    first_user = next((m.content for m in messages if m.role == "user"), None)
    return StoredConversation(
        id=0,
        title=custom_title or auto_title(first_user) or UNTITLED,
        model_path=_optional_text(document, "model_path", ""),
        system_prompt=_text(document, "system_prompt", "", default=""),
        created=created,
        updated=_number(document, "updated", "", default=created),
        messages=messages,
        custom_title=custom_title,
    )


def _message(raw: Any, where: str, *, position: int, default_created: float) -> StoredMessage:
    if not isinstance(raw, dict):
        raise TransferError(f"{where} must be an object, not {_shown(raw)}")
    role = raw.get("role")
    if role not in _ROLES:
        raise TransferError(f"{where}.role must be one of {', '.join(_ROLES)}, not {_shown(role)}")
    partial = raw.get("partial", False)
    if not isinstance(partial, bool):
        raise TransferError(f"{where}.partial must be true or false, not {_shown(partial)}")
    return StoredMessage(
        id=0,
        position=position,
        role=role,
        content=_text(raw, "content", where),
        partial=partial,
        stats=_optional_object(raw, "stats", where),
        created=_number(raw, "created", where, default=default_created),
        reasoning=_text(raw, "reasoning", where, default=""),
        model_path=_optional_text(raw, "model_path", where),
        settings=_optional_object(raw, "settings", where),
    )


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else f'"{key}"'


def _shown(value: Any) -> str:
    """A value as a short JSON snippet, for an error message."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:39] + "…"


def _text(obj: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        missing = key not in obj
        raise TransferError(
            f"{_key(where, key)} is missing"
            if missing
            else f"{_key(where, key)} must be text, not {_shown(value)}"
        )
    return value


def _optional_text(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise TransferError(f"{_key(where, key)} must be text or null, not {_shown(value)}")
    return value


def _optional_object(obj: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, dict):
        raise TransferError(f"{_key(where, key)} must be an object or null, not {_shown(value)}")
    return value


def _number(obj: Mapping[str, Any], key: str, where: str, *, default: float) -> float:
    value = obj.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(float(value))
    ):
        raise TransferError(f"{_key(where, key)} must be a number (seconds), not {_shown(value)}")
    return float(value)


@dataclass(frozen=True)
class Imported:
    """What an import did: the conversation's id, and whether it was already saved."""

    conversation_id: int
    already_saved: bool


def import_conversation(store: ConversationStore, conversation: StoredConversation) -> Imported:
    """Save ``conversation`` (from ``from_json``) unless an identical one is already saved."""
    exported = to_json(conversation)
    for candidate in store.ids_created_at(conversation.created):
        if to_json(store.load(candidate)) == exported:
            return Imported(candidate, already_saved=True)
    return Imported(store.restore(conversation), already_saved=False)


# ---- Markdown -----------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_INLINE_SPECIAL_RE = re.compile(r"([\\`*_\[\]<>#!|~&])")


def local_minute(timestamp: float) -> str:
    """Seconds since the epoch as local time, to the minute (``2024-05-01 14:03``)."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def inline(text: str) -> str:
    """Outside text for one line of Markdown: on one line, every Markdown character escaped."""
    return _INLINE_SPECIAL_RE.sub(r"\\\1", " ".join(text.split()))


def contained(text: str) -> str:
    """Markdown text made unable to break the page around it: a fence it leaves open is closed,
    and ``<`` outside code becomes ``&lt;`` (shown the same, never read as HTML)."""
    out: list[str] = []
    fence: str | None = None  # the open fence's characters, e.g. "````"
    for line in text.split("\n"):
        match = _FENCE_RE.match(line)
        if fence is not None:
            closes = match and match[1][0] == fence[0] and len(match[1]) >= len(fence)
            if closes and match and not match[2].strip():
                fence = None
            out.append(line)
            continue
        if match and not (match[1][0] == "`" and "`" in match[2]):
            fence = match[1]
            out.append(line)
            continue
        out.append(_escape_html_outside_code_spans(line))
    if fence is not None:
        out.append(fence)
    return "\n".join(out)


def _escape_html_outside_code_spans(line: str) -> str:
    """``<`` as ``&lt;`` except inside a code span closed on the same line."""
    pieces: list[str] = []
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\" and index + 1 < len(line):
            pieces.append(line[index : index + 2])  # an escaped character is never markup
            index += 2
            continue
        if char == "`":
            run_end = index
            while run_end < len(line) and line[run_end] == "`":
                run_end += 1
            run = line[index:run_end]
            close = _matching_backticks(line, run_end, len(run))
            if close is not None:
                pieces.append(line[index : close + len(run)])
                index = close + len(run)
            else:
                pieces.append(run)
                index = run_end
            continue
        pieces.append("&lt;" if char == "<" else char)
        index += 1
    return "".join(pieces)


def _matching_backticks(line: str, start: int, length: int) -> int | None:
    """Where a run of exactly ``length`` backticks begins at or after ``start``, if any."""
    index = start
    while index < len(line):
        if line[index] == "`":
            end = index
            while end < len(line) and line[end] == "`":
                end += 1
            if end - index == length:
                return index
            index = end
        else:
            index += 1
    return None


def _settings_line(settings: Mapping[str, Any]) -> str:
    names = {
        "temperature": "temperature",
        "top_p": "top-p",
        "top_k": "top-k",
        "min_p": "min-p",
        "repeat_penalty": "repeat penalty",
        "max_tokens": "max tokens",
        "seed": "seed",
    }
    parts = [
        f"{label} {inline(str(settings[key]))}"
        for key, label in names.items()
        if settings.get(key) is not None
    ]
    stops = settings.get("stop")
    if isinstance(stops, list) and stops:
        parts.append("stop " + ", ".join(f"“{inline(str(stop))}”" for stop in stops))
    parts.extend(
        f"{inline(str(key))} {inline(str(value))}"
        for key, value in settings.items()
        if key not in names and key != "stop"
    )
    return " · ".join(parts)


def _stats_line(stats: Mapping[str, Any]) -> str:
    parts = []
    generated = stats.get("generated_tokens")
    if isinstance(generated, int):
        parts.append(f"{generated} tokens")
    rate = stats.get("generation_tokens_per_s")
    if isinstance(rate, (int, float)):
        parts.append(f"{rate:.1f} tokens/s")
    total = stats.get("total_s")
    if isinstance(total, (int, float)):
        parts.append(f"{total:.1f} s")
    return " · ".join(parts)


def _message_markdown(message: StoredMessage, conversation_model: str | None) -> list[str]:
    heading = f"## {_ROLE_NAMES[message.role]} · {local_minute(message.created)}"
    lines = [heading, ""]
    if message.role == "assistant":
        model = message.model_name or (
            Path(conversation_model).name if conversation_model else None
        )
        about = [f"model {inline(model)}" if model else "model not recorded"]
        if message.settings:
            about.append(_settings_line(message.settings))
        if message.stats:
            about.append(_stats_line(message.stats))
        if message.partial:
            about.append("stopped before the end")
        lines += ["*" + " · ".join(part for part in about if part) + "*", ""]
    if message.reasoning:
        lines += [
            "<details>",
            "<summary>Thinking</summary>",
            "",
            contained(message.reasoning),
            "",
            "</details>",
            "",
        ]
    lines += [contained(message.content), ""]
    return lines


def to_markdown(conversation: StoredConversation) -> str:
    """The conversation as a Markdown page for reading (see the module docstring)."""
    lines = [f"# {inline(conversation.title)}", ""]
    if conversation.model_name:
        lines.append(f"- Model: {inline(conversation.model_name)}")
    lines += [
        f"- Started: {local_minute(conversation.created)}",
        f"- Last changed: {local_minute(conversation.updated)}",
        f"- Messages: {len(conversation.messages)}",
        "",
    ]
    if conversation.system_prompt:
        lines += ["## System prompt", "", contained(conversation.system_prompt), ""]
    for message in conversation.messages:
        lines += _message_markdown(message, conversation.model_path)
    return "\n".join(lines).rstrip("\n") + "\n"


# ---- files --------------------------------------------------------------------------------------


def file_name(conversation: StoredConversation, extension: str) -> str:
    """A file name for an export: ``conversation-<id>-<title in ASCII words>.<extension>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", conversation.title.lower()).strip("-")[:40].strip("-")
    return f"conversation-{conversation.id}" + (f"-{slug}" if slug else "") + f".{extension}"


def write_new_file(folder: Path, name: str, text: str) -> Path:
    """Write ``text`` (UTF-8) to a new file ``name`` in ``folder``, never over an existing one:
    ``name-2``, ``name-3``... when taken. Returns the path; raises ``OSError``."""
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    counter = 1
    while True:
        candidate = folder / (name if counter == 1 else f"{stem}-{counter}{dot}{extension}")
        try:
            with open(candidate, "x", encoding="utf-8", newline="") as handle:
                handle.write(text)
        except FileExistsError:
            counter += 1
            continue
        except OSError:
            if candidate.exists() and candidate.stat().st_size == 0:
                os.unlink(candidate)
            raise
        return candidate
