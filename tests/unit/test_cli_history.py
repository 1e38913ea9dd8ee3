"""``tui-llm history``, ``export`` and ``import`` as a script uses them: real processes on the
store of a temporary data folder, exit codes, stdout for data and stderr for one-line messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tui_llm.engine.protocol import SamplingParams
from tui_llm.store import ConversationStore


def tui_llm(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if data_dir is not None:
        env["TUI_LLM_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "tui_llm", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )


def saved_conversations() -> tuple[int, int]:
    """Two conversations in the default store: an older one about WAL, a newer about FTS."""
    with ConversationStore() as store:
        wal = store.new_conversation("/models/qwen.gguf", "Be brief.")
        store.add_message(wal, "user", "What is a write-ahead log?")
        store.add_message(
            wal,
            "assistant",
            "A journal of changes.\nCheckpoints copy it back.",
            model_path="/models/qwen.gguf",
            settings=SamplingParams(temperature=0.2),
        )
        fts = store.new_conversation(None, "")
        store.set_title(fts, "Full-text \x1b[31msearch")
        store.add_message(fts, "user", "How does FTS5 rank results?")
    return wal, fts


def test_history_lists_and_searches_for_people_and_scripts(user_dirs: Path) -> None:
    empty = tui_llm("history")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "No saved conversations.\n")
    wal, fts = saved_conversations()

    listed = tui_llm("history")
    assert listed.returncode == 0, listed.stderr
    header, first, second = listed.stdout.splitlines()
    assert header.split() == ["ID", "CHANGED", "MSGS", "MODEL", "TITLE"]
    # The table is for people, even through a pipe (scripts read --json): inert, one line each.
    assert first.split()[0] == str(fts) and first.endswith("Full-text ␛[31msearch")
    assert second.split()[0] == str(wal) and "qwen.gguf" in second

    rows = json.loads(tui_llm("history", "--json").stdout)
    assert [(r["id"], r["message_count"], r["model_path"]) for r in rows] == [
        (fts, 1, None),
        (wal, 2, "/models/qwen.gguf"),
    ]

    found = tui_llm("history", "--search", "checkpoint")
    assert found.returncode == 0
    assert found.stdout.splitlines()[2].strip() == "assistant: Checkpoints copy it back."
    (hit,) = json.loads(tui_llm("history", "--json", "--search", "checkpoint").stdout)
    assert hit["id"] == wal and hit["match"]["position"] == 1
    assert hit["match"]["spans"] == [[0, 11]]
    nothing = tui_llm("history", "--search", "nowhere")
    assert (nothing.returncode, nothing.stdout) == (0, "")


def test_export_import_export_through_the_command_line_is_byte_identical(
    user_dirs: Path, tmp_path: Path
) -> None:
    wal, _ = saved_conversations()
    exported = tmp_path / "wal.json"
    written = tui_llm("export", str(wal), "--format", "json", "-o", str(exported))
    assert written.returncode == 0, written.stderr
    assert written.stderr == f"Exported conversation {wal} to {exported}\n"
    assert json.loads(exported.read_text())["messages"][1]["settings"]["temperature"] == 0.2

    elsewhere = tmp_path / "other-data"
    imported = tui_llm("import", str(exported), data_dir=elsewhere)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == "1\n"
    assert imported.stderr == "Imported “What is a write-ahead log?” as conversation 1\n"
    again = tui_llm("export", "--last", "--format", "json", data_dir=elsewhere)
    assert again.stdout == exported.read_text(encoding="utf-8")

    twice = tui_llm("import", str(exported), data_dir=elsewhere)
    assert (twice.returncode, twice.stdout) == (0, "1\n")
    assert "already saved, as conversation 1" in twice.stderr
    assert len(json.loads(tui_llm("history", "--json", data_dir=elsewhere).stdout)) == 1

    markdown = tui_llm("export", "--last")
    assert markdown.returncode == 0
    assert markdown.stdout.startswith("# Full-text")
    assert "## User · " in markdown.stdout


def test_bad_requests_exit_2_with_one_line(user_dirs: Path, tmp_path: Path) -> None:
    saved_conversations()
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "tui-llm-conversation", "version": 1, "messages": [{}]}')
    for args, message in (
        (("export", "999"), "no conversation 999"),
        (("export",), "one of the arguments id --last is required"),
        (("export", "1", "--format", "pdf"), "invalid choice: 'pdf'"),
        (("import", str(tmp_path / "missing.json")), "cannot read"),
        (("import", str(bad)), "bad.json: messages[0].role must be one of"),
    ):
        result = tui_llm(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
