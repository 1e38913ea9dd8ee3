"""Data safety: the real ``tui-llm`` in tmux, SIGKILLed at a random moment while messages are
sent and replies stream, against one real SQLite file for every run; and the settings file
SIGKILLed while it is written.

After each kill: ``PRAGMA integrity_check``; every user message that was on screen in a capture
taken before the kill is in the database; how much of the reply that was on screen the database
lacks, as the time between the kill and the last capture whose reply text the database holds
(captures every ``CAPTURE_EVERY_S``); and no engine process is left.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.reliability.harness import DIR_VARS, REPO, end_process
from benchmarks.sections import markdown_table

CAPTURE_EVERY_S = 0.15
KILL_WINDOW_S = (0.5, 12.0)  # seconds after the start: start-up, load, sends and replies
COLUMNS, LINES = 120, 40
CHAT_COLUMNS = 85  # the chat column's width at 120 columns (the panels are to its right)
TAG = re.compile(r"msg-(\d+)-(\d+)")


@dataclass
class Capture:
    at: float
    text: str


@dataclass
class KillRun:
    """One run: when it was killed, what the screen and the database held."""

    run: int
    kill_at_s: float
    stage: str = ""
    sent: int = 0
    shown_user: set[str] = field(default_factory=set)
    saved_user: set[str] = field(default_factory=set)
    reply_lost_s: float | None = None  # None: no reply was on screen
    detail: str = ""  # what the screen showed against what was saved, where much was lost
    integrity: str = ""
    engines_left: int = 0
    error: str = ""

    @property
    def lost_user(self) -> set[str]:
        return self.shown_user - self.saved_user


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var in DIR_VARS:
        env[f"TUI_LLM_{var}_DIR"] = str(root / var.lower())
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


PANEL_TOP = "╭─ "


def chat_columns(screen: str) -> int:
    """Where the chat column ends: at the left edge of the panels beside it (their top corners,
    as the screen has them), else ``CHAT_COLUMNS``."""
    edges = [line.find(PANEL_TOP) for line in screen.splitlines()]
    edges = [edge for edge in edges if edge > 20]
    return min(edges, default=CHAT_COLUMNS)


def chat_text(screen: str) -> str:
    """The chat column's text, its lines joined, whitespace collapsed."""
    width = chat_columns(screen)
    lines = [line[:width].strip(" █▊▎") for line in screen.splitlines()]
    return " ".join(" ".join(lines).split())


FIGURES = re.compile(r"\d+ tokens · ")
MESSAGE_BOX = "Message · Enter send"
WORD = re.compile(r"[A-Za-z0-9']+")


def chat_above_box(screen: str) -> str:
    """The chat's text without the message box (where a message is typed before it is sent)."""
    return chat_text(screen).split(MESSAGE_BOX)[0]


def reply_tail(screen: str, after: str, words: int = 8) -> tuple[str, ...]:
    """The last words of the reply to the message tagged ``after``: past the tag and the
    "Assistant" header where they are in view, before its figures line if it has ended, above
    the message box. Words only, the last one dropped (it may be half streamed, or clipped by a
    code block's edge): Markdown's rendering changes the marks around them.

    The tag is looked for under the "You" header: a reply may repeat it ("msg-0-2: I'm here to
    help"), and a reply read from there on would look as if it had not started."""
    text = chat_above_box(screen)
    sent = f"You {after}"
    text = text[text.rfind(sent) :] if sent in text else text
    at = text.rfind("Assistant ")
    if sent in text and at < 0:
        return ()  # the reply has not started
    reply = text[at + len("Assistant ") :] if at >= 0 else text
    reply = FIGURES.split(reply)[0]
    return tuple(WORD.findall(reply)[-words - 1 : -1])


def holds(saved: str, tail: tuple[str, ...], misses: int = 2) -> bool:
    """Whether the words of ``tail`` appear in order in ``saved``, all but ``misses`` of them
    (a code block's clipped lines leave words out of the screen's copy; Markdown renumbers a
    list, and a table's cell cut short ends in a word the text does not have). Text the store
    has not got yet misses them all: it comes after what was saved."""
    words = WORD.findall(saved)
    allowed = min(misses, len(tail) // 4)
    span = len(tail) + 8  # the words found lie together, not scattered over the reply
    starts = {i for i, word in enumerate(words) if word in tail[: allowed + 1]}
    for start in sorted(starts):
        window = words[start : start + span]
        at = missed = 0
        for word in tail:
            try:
                at = window.index(word, at) + 1
            except ValueError:
                missed += 1
        if missed <= allowed:
            return True
    return not tail


def kill_run(run: int, model: Path, root: Path, rng: random.Random) -> KillRun:
    """Start ``tui-llm`` in tmux, chat, SIGKILL it at a random moment, and check the database."""
    env = _env(root)
    kill_at = rng.uniform(*KILL_WINDOW_S)
    result = KillRun(run, kill_at)
    session = f"tui-llm-kill-{os.getpid()}-{run}"
    command = (
        f"cd {shlex.quote(str(REPO))} && exec {shlex.quote(sys.executable)} -m tui_llm "
        f"{shlex.quote(str(model))} --threads 1 --ctx 4096"
    )
    exports = [f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(("TUI_LLM_", "HF_"))]
    _tmux(
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        str(COLUMNS),
        "-y",
        str(LINES),
        "env " + " ".join(exports) + " sh -c " + shlex.quote(command),
    )
    started = time.monotonic()
    captures: list[Capture] = []
    try:
        pid = int(_tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip() or 0)
        next_send = 0.0
        while time.monotonic() - started < kill_at:
            screen = _tmux("capture-pane", "-p", "-t", session)
            captures.append(Capture(time.monotonic(), screen))
            loaded = "Loaded in" in screen or "tok/s" in screen
            idle = "generating" not in screen
            now = time.monotonic()
            if loaded and idle and now >= next_send:
                result.sent += 1
                text = f"msg-{run}-{result.sent} " + rng.choice(
                    ("tell me about llamas", "and then?", "go on", "what about the weather")
                )
                _tmux("send-keys", "-t", session, "-l", text)
                _tmux("send-keys", "-t", session, "Enter")
                next_send = now + rng.uniform(0.2, 2.0)
            time.sleep(CAPTURE_EVERY_S)
        screen = _tmux("capture-pane", "-p", "-t", session)
        captures.append(Capture(time.monotonic(), screen))
        if pid:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        result.stage = (
            "start-up"
            if "Loaded in" not in screen and "tok/s" not in screen
            else "reply streaming"
            if "generating" in screen
            else "idle or sending"
        )
        result.engines_left = _engines_left(root)
        for capture in captures:
            result.shown_user |= {m[0] for m in TAG.finditer(chat_text(capture.text))}
        _check_database(result, root, captures, killed)
    except Exception as exc:  # a run's failure is its result
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        _tmux("kill-session", "-t", session)
    return result


def _engines_left(root: Path, wait_s: float = 3.0) -> int:
    """Engine processes whose log lies under ``root`` still alive ``wait_s`` after the kill
    (they die with their parent; each is killed here after counting)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            ours = b"tui_llm.engine.worker" in cmdline and str(root).encode() in cmdline
            if ours and state != "Z":
                found.append(int(entry.name))
        if not found or time.monotonic() > deadline:
            for pid in found:
                end_process(pid)
            return len(found)
        time.sleep(0.05)


def _check_database(result: KillRun, root: Path, captures: list[Capture], killed: float) -> None:
    database = root / "data" / "conversations.sqlite3"
    if not database.exists():
        result.integrity = "no file yet"
        return
    with sqlite3.connect(database) as db:
        result.integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
        rows = db.execute(
            "SELECT role, content FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            "ORDER BY m.id"
        ).fetchall()
    for role, content in rows:
        if role == "user":
            result.saved_user |= {m[0] for m in TAG.finditer(content) if m[1] == str(result.run)}
    replies = [c for r, c in rows if r == "assistant"]
    saved = replies[-1] if replies else ""
    last_tag = max(result.shown_user, key=lambda t: int(t.split("-")[2]), default=None)
    # The captures since the last message was sent (its reply may scroll it out of view).
    first = next(
        (i for i, c in enumerate(captures) if last_tag and last_tag in chat_above_box(c.text)),
        None,
    )
    latest = captures[first:] if first is not None else []
    tails = [(c.at, reply_tail(c.text, last_tag or "")) for c in latest]
    tails = [(at, tail) for at, tail in tails if tail]
    if not tails:
        return
    held = [at for at, tail in tails if holds(saved, tail)]
    result.reply_lost_s = killed - max(held) if held else killed - tails[0][0]
    if result.reply_lost_s > 1.2:  # more than the design allows: the evidence, for a reader
        shown = [f"{killed - at:.2f} s before: {' '.join(tail)}" for at, tail in tails[-6:]]
        width = chat_columns(captures[-1].text)
        result.detail = f"chat {width} columns; saved ends {saved[-160:]!r}; shown " + " | ".join(
            shown
        )


@dataclass
class SettingsRun:
    run: int
    kill_after_s: float
    parsed: bool
    version: int | None  # the counter value the file holds
    temp_files: int


SETTINGS_WRITER = """
import sys, time
from pathlib import Path
from tui_llm import config
path = Path(sys.argv[1])
settings = config.Settings()
n = 0
while True:
    n += 1
    settings.system_prompt = f"version {n} " + "x" * 4000
    settings.recent_models = [f"/models/m{i}-{n}.gguf" for i in range(50)]
    config.save_settings(settings, path)
"""


def settings_kill_run(run: int, folder: Path, rng: random.Random) -> SettingsRun:
    """A process saving settings as fast as it can, SIGKILLed at a random moment; the file
    then parses, whole, and holds one of the versions written."""
    from tui_llm import config

    path = folder / "settings.toml"
    proc = subprocess.Popen(
        [sys.executable, "-c", SETTINGS_WRITER, str(path)], cwd=REPO, env=dict(os.environ)
    )
    while not path.exists() and proc.poll() is None:
        time.sleep(0.01)
    delay = rng.uniform(0.0, 0.5)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    settings, warning = config.load_settings(path)
    match = re.match(r"version (\d+) x{4000}$", settings.system_prompt)
    version = int(match[1]) if match else None
    kept = len(settings.recent_models)  # the app keeps the most recent few
    whole = (
        warning is None
        and match is not None
        and kept > 0
        and settings.recent_models == [f"/models/m{i}-{version}.gguf" for i in range(kept)]
    )
    temp = len(list(folder.glob(".settings.toml.*.tmp")))
    return SettingsRun(run, delay, whole, version, temp)


def kill_table(runs: list[KillRun]) -> str:
    lost = [r.reply_lost_s for r in runs if r.reply_lost_s is not None]
    stages: dict[str, int] = {}
    for r in runs:
        stages[r.stage or "error"] = stages.get(r.stage or "error", 0) + 1
    summary = markdown_table(
        ("measure", "figure"),
        [
            ("runs (SIGKILL of the UI at a random moment, 0.5-12 s after start)", str(len(runs))),
            ("stage at the kill", ", ".join(f"{k} {v}" for k, v in sorted(stages.items()))),
            (
                "user messages sent / seen on screen / on screen but not saved",
                f"{sum(r.sent for r in runs)} / {sum(len(r.shown_user) for r in runs)} / "
                f"{sum(len(r.lost_user) for r in runs)}",
            ),
            ("`PRAGMA integrity_check`", ", ".join(sorted({r.integrity for r in runs}))),
            (
                "reply on screen but not saved (kill less last capture saved), median / max",
                f"{_median(lost):.2f} s / {max(lost):.2f} s over {len(lost)} runs with a reply"
                if lost
                else "no run had a reply on screen",
            ),
            ("engine processes left after the kill", str(sum(r.engines_left for r in runs))),
            (
                "runs that failed to measure",
                "; ".join(f"{r.run}: {r.error}" for r in runs if r.error) or "none",
            ),
        ],
    )
    return summary


def temps_after_next_save(folder: Path) -> int:
    """Age the temp files the kills left past ``STALE_TEMP_S``, save once, count what is left."""
    from tui_llm import config
    from tui_llm.tomlfile import STALE_TEMP_S

    old = time.time() - STALE_TEMP_S - 1
    for temp in folder.glob(".settings.toml.*.tmp"):
        os.utime(temp, (old, old))
    config.save_settings(
        config.load_settings(folder / "settings.toml")[0], folder / "settings.toml"
    )
    return len(list(folder.glob(".settings.toml.*.tmp")))


def settings_table(runs: list[SettingsRun], left_after_save: int) -> str:
    return markdown_table(
        ("measure", "figure"),
        [
            ("runs (a process saving settings in a loop, SIGKILLed 0-0.5 s in)", str(len(runs))),
            (
                "file whole and parsed (one version, every field of it)",
                f"{sum(r.parsed for r in runs)} / {len(runs)}",
            ),
            (
                "versions written before the kill, median",
                str(int(_median([float(r.version or 0) for r in runs]))),
            ),
            (
                "temporary files beside it after the last kill (one per kill mid-write)",
                str(max(r.temp_files for r in runs)),
            ),
            ("... after the next save, once they are a minute old", str(left_after_save)),
        ],
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0
