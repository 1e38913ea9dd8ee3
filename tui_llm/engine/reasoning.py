"""Split a reasoning model's output into its thinking and its answer, as the text streams.

Two formats: ``<think>`` tags, and gpt-oss's harmony channels (``HarmonySplitter``, below).
Qwen3, QwQ, DeepSeek-R1 and its distills write ``<think>…</think>`` before the answer. Some chat
templates (DeepSeek-R1's, Qwen3's with thinking forced) put the opening ``<think>`` in the prompt,
so the output starts inside the thinking with no opening tag: ``prompt_opens_thinking`` tells.
A tag can arrive split over several tokens, so a tail that may be the start of a tag is held back
until the next piece decides it.
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


def prompt_opens_thinking(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an open thinking block (the template opened it)."""
    tail = prompt.rstrip()
    return tail.endswith(OPEN_TAG)


def _partial_tag_length(text: str, tag: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


@dataclass
class Split:
    """Text one ``feed`` produced: thinking and answer (either may be empty)."""

    reasoning: str = ""
    answer: str = ""


class ReasoningSplitter:
    """Incremental ``<think>`` parser: feed raw text pieces, get thinking and answer apart.

    Only a ``<think>`` at the very start of the output (after whitespace) opens a thinking block;
    the same text later in an answer is the answer's own text (a model explaining the tags).
    Whitespace right after either tag is dropped; an output without tags passes unchanged.
    """

    def __init__(self, starts_in_reasoning: bool = False) -> None:
        self.in_reasoning = starts_in_reasoning
        self._strip_next = starts_in_reasoning  # drop whitespace until the section's first text
        self._pending = ""  # a tail that may be the start of a tag
        self._may_open = not starts_in_reasoning

    def feed(self, text: str) -> Split:
        """Take the next piece of raw output; returns what can be shown now."""
        out = Split()
        data = self._pending + text
        self._pending = ""
        while data:
            if self.in_reasoning:
                index = data.find(CLOSE_TAG)
                if index == -1:
                    hold = _partial_tag_length(data, CLOSE_TAG)
                    self._emit(out, data[: len(data) - hold])
                    self._pending = data[len(data) - hold :]
                    break
                self._emit(out, data[:index])
                data = data[index + len(CLOSE_TAG) :]
                self.in_reasoning = False
                self._strip_next = True
                continue
            if self._may_open:
                stripped = data.lstrip()
                if not stripped:
                    self._pending = data  # only whitespace yet: the tag may still come
                    break
                if stripped.startswith(OPEN_TAG):
                    data = stripped[len(OPEN_TAG) :]
                    self.in_reasoning = True
                    self._may_open = False
                    self._strip_next = True
                    continue
                if OPEN_TAG.startswith(stripped):
                    self._pending = data  # a split "<thi…": wait for the rest
                    break
                self._may_open = False
            self._emit(out, data)
            break
        return out

    def finish(self) -> Split:
        """The end of the output: whatever was held back goes where it was heading."""
        out = Split()
        held, self._pending = self._pending, ""
        self._may_open = False  # a "<thi" that never finished is the text itself
        self._emit(out, held)
        return out

    def _emit(self, out: Split, text: str) -> None:
        if self._strip_next:
            text = text.lstrip()
            if not text:
                return
            self._strip_next = False
        if self.in_reasoning:
            out.reasoning += text
        else:
            out.answer += text


def split_reasoning(text: str, starts_in_reasoning: bool = False) -> tuple[str, str]:
    """``(reasoning, answer)`` of a whole output; see ``ReasoningSplitter``."""
    splitter = ReasoningSplitter(starts_in_reasoning)
    first = splitter.feed(text)
    last = splitter.finish()
    return (first.reasoning + last.reasoning).rstrip(), first.answer + last.answer


# ---- gpt-oss: the harmony format ------------------------------------------------------------
#
# OpenAI's harmony format (gpt-oss) writes each message as a header and a body:
# "<|channel|>analysis<|message|>thinking<|end|><|start|>assistant<|channel|>final<|message|>
# answer<|return|>". The "analysis" and "commentary" channels are the thinking, "final" the answer.

HARMONY_MESSAGE = "<|message|>"
HARMONY_CHANNEL = "<|channel|>"
HARMONY_ENDS = ("<|end|>", "<|return|>", "<|call|>", "<|start|>")
REASONING_CHANNELS = frozenset({"analysis", "commentary"})


def is_harmony_template(template: str) -> bool:
    """Whether a chat template writes the harmony format (gpt-oss): <|start|>role<|message|>."""
    return HARMONY_MESSAGE in template and (HARMONY_CHANNEL in template or "<|start|>" in template)


def harmony_channel(header: str) -> str:
    """The channel a harmony header names ("assistant<|channel|>final" is "final")."""
    _, found, rest = header.partition(HARMONY_CHANNEL)
    if not found:
        return "final"
    name = rest.split("<|", 1)[0].split()
    return name[0] if name else "final"


def harmony_prompt_channel(prompt: str) -> str | None:
    """The channel a rendered prompt leaves the reply inside, or ``None`` (it starts a header)."""
    if not prompt.endswith(HARMONY_MESSAGE):
        return None
    header = prompt[: -len(HARMONY_MESSAGE)].rsplit("<|start|>", 1)[-1]
    return harmony_channel(header)


class HarmonySplitter:
    """Incremental harmony parser with ``ReasoningSplitter``'s interface: headers are never shown,
    analysis and commentary bodies are thinking, final bodies (and bodies with no channel) are
    the answer."""

    def __init__(self, starts_in_channel: str | None = None) -> None:
        self._channel = starts_in_channel  # None: reading a header
        self._header = ""
        self._pending = ""
        self.in_reasoning = starts_in_channel in REASONING_CHANNELS

    def feed(self, text: str) -> Split:
        out = Split()
        data = self._pending + text
        self._pending = ""
        while data:
            if self._channel is None:
                header = self._header + data
                index = header.find(HARMONY_MESSAGE)
                if index == -1:
                    self._header = header  # never shown; the marker may still be arriving
                    break
                self._channel = harmony_channel(header[:index])
                self._header = ""
                self.in_reasoning = self._channel in REASONING_CHANNELS
                data = header[index + len(HARMONY_MESSAGE) :]
                continue
            ends = [(data.find(end), end) for end in HARMONY_ENDS if end in data]
            if not ends:
                hold = max(_partial_tag_length(data, end) for end in HARMONY_ENDS)
                self._emit(out, data[: len(data) - hold])
                self._pending = data[len(data) - hold :]
                break
            index, end = min(ends)
            self._emit(out, data[:index])
            data = data[index + len(end) :]
            self._channel = None
            self.in_reasoning = False
        return out

    def finish(self) -> Split:
        out = Split()
        held, self._pending = self._pending, ""
        if self._channel is not None:
            self._emit(out, held)
        return out

    def _emit(self, out: Split, text: str) -> None:
        if self.in_reasoning:
            out.reasoning += text
        else:
            out.answer += text


def splitter_for(template: str, prompt: str) -> ReasoningSplitter | HarmonySplitter:
    """The splitter for a model's output format, starting where its prompt leaves off."""
    if is_harmony_template(template):
        return HarmonySplitter(harmony_prompt_channel(prompt))
    return ReasoningSplitter(prompt_opens_thinking(prompt))
