"""``tui-llm history``, ``tui-llm export`` and ``tui-llm import``: saved conversations for scripts.

They read and write the app's own store (``data_dir()/conversations.sqlite3``; the app may be
running: SQLite's WAL lets both work). ``history`` prints a table for people, its outside text
made inert and kept to one line even through a pipe; ``--json`` is the exact text, for scripts.
Store failures exit 1 with one line on stderr; bad
arguments and files that cannot be imported exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tui_llm.cli.args import UsageError, positive_int, say
from tui_llm.store import ConversationStore, ConversationSummary, SearchHit, StoreError
from tui_llm.textsafe import for_stream, make_inert


def add_history_parsers(sub: Any) -> None:
    """The ``history``, ``export`` and ``import`` subcommands."""
    history = sub.add_parser("history", help="list saved conversations, newest first")
    history.add_argument("--json", action="store_true", help="print one JSON array")
    history.add_argument(
        "--search", metavar="TEXT", help="only conversations with every word of TEXT"
    )
    history.add_argument("--limit", type=positive_int, default=None, metavar="N")

    export = sub.add_parser("export", help="write a saved conversation as Markdown or JSON")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=positive_int, help="a conversation id (history)")
    which.add_argument("--last", action="store_true", help="the most recently changed one")
    export.add_argument("--format", choices=("md", "json"), default="md")
    export.add_argument("-o", "--output", type=Path, metavar="FILE", help="instead of stdout")

    imported = sub.add_parser("import", help="save a conversation exported as JSON")
    imported.add_argument("file", type=Path, metavar="FILE.json")


def _summary_json(summary: ConversationSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "title": summary.title,
        "created": summary.created,
        "updated": summary.updated,
        "message_count": summary.message_count,
        "model_path": summary.model_path,
    }


def _hit_json(hit: SearchHit) -> dict[str, Any]:
    return {
        **_summary_json(hit.summary),
        "match": {
            "message_id": hit.message_id,
            "position": hit.position,
            "role": hit.role,
            "line": hit.line,
            "spans": [list(span) for span in hit.spans],
        },
    }


def _summary_line(summary: ConversationSummary) -> str:
    from tui_llm.store.transfer import local_minute

    model = make_inert(summary.model_name or "-", one_line=True)
    title = make_inert(summary.title, one_line=True)
    return (
        f"{summary.id:>6}  {local_minute(summary.updated)}  {summary.message_count:>5}  "
        f"{model}  {title}"
    )


def run_history(args: argparse.Namespace) -> int:
    """List conversations (or search them): one per line, or one JSON array."""
    try:
        with ConversationStore() as store:
            if args.search is not None:
                hits = store.search(args.search, limit=args.limit or 50)
                summaries = [hit.summary for hit in hits]
            else:
                hits = []
                summaries = store.list_conversations(limit=args.limit)
    except StoreError as exc:
        say(f"tui-llm: {exc}", one_line=True)
        return 1
    if args.json:
        rows = [_hit_json(hit) for hit in hits] if args.search is not None else None
        print(json.dumps(rows or [_summary_json(s) for s in summaries], ensure_ascii=False))
        return 0
    if not summaries:
        say("No conversations found." if args.search is not None else "No saved conversations.")
        return 0
    lines = [f"{'ID':>6}  {'CHANGED':<16}  {'MSGS':>5}  MODEL  TITLE"]
    for index, summary in enumerate(summaries):
        lines.append(_summary_line(summary))
        if hits:
            hit = hits[index]
            where = hit.role or "title"
            lines.append(f"{'':>8}{where}: {make_inert(hit.line, one_line=True)}")
    print(for_stream("\n".join(lines), sys.stdout))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write one conversation as Markdown or JSON to stdout or ``--output``."""
    from tui_llm.store.transfer import to_json, to_markdown

    try:
        with ConversationStore() as store:
            if args.last:
                newest = store.list_conversations(limit=1)
                if not newest:
                    raise UsageError("there are no saved conversations to export")
                conversation_id = newest[0].id
            else:
                conversation_id = args.id
            try:
                conversation = store.load(conversation_id)
            except StoreError as exc:
                if exc.kind == "missing":
                    raise UsageError(
                        f"no conversation {conversation_id} (tui-llm history lists them)"
                    ) from None
                raise
    except StoreError as exc:
        say(f"tui-llm: {exc}", one_line=True)
        return 1
    text = to_json(conversation) if args.format == "json" else to_markdown(conversation)
    if args.output is None:
        sys.stdout.write(for_stream(text, sys.stdout))
        return 0
    output: Path = args.output.expanduser()
    temporary = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(text, encoding="utf-8", newline="")
        os.replace(temporary, output)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    say(f"Exported conversation {conversation.id} to {output}", one_line=True)
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Save the conversation in a JSON export; prints its id. An identical conversation that
    is already saved is reported and not saved again (see ``store.transfer``)."""
    from tui_llm.store.transfer import TransferError, from_json, import_conversation

    path: Path = args.file.expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        conversation = from_json(data)
    except TransferError as exc:
        raise UsageError(f"{path}: {exc}") from None
    try:
        with ConversationStore() as store:
            result = import_conversation(store, conversation)
    except StoreError as exc:
        say(f"tui-llm: {exc}", one_line=True)
        return 1
    if result.already_saved:
        say(
            f"“{conversation.title}” is already saved, as conversation {result.conversation_id}",
            one_line=True,
        )
    else:
        say(
            f"Imported “{conversation.title}” as conversation {result.conversation_id}",
            one_line=True,
        )
    print(result.conversation_id)
    return 0
