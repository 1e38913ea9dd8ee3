"""The conversation being held: messages, the partial reply, regenerate and edit rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from tui_llm.engine.protocol import ChatMessage


@dataclass
class Conversation:
    """Turns of one chat; the system prompt is kept apart so it can change at any time."""

    system_prompt: str = ""
    turns: list[ChatMessage] = field(default_factory=list)
    # Turns before this index were left out of the last prompt: the context could not hold
    # them (``tui_llm.context_fit``). 0: everything is sent.
    first_sent_turn: int = 0

    def for_model(self) -> tuple[ChatMessage, ...]:
        """What is sent to the model: the system prompt (if any) and every turn."""
        head = (ChatMessage("system", self.system_prompt),) if self.system_prompt.strip() else ()
        return (*head, *self.turns)

    def add_user(self, text: str) -> None:
        self.turns.append(ChatMessage("user", text))

    def add_reply(self, text: str, reasoning: str = "") -> None:
        """Record a reply, a partial one (stopped, crashed) included: nothing is lost.

        ``text`` is the answer; a reasoning model's thinking is kept apart in ``reasoning``.
        """
        self.turns.append(ChatMessage("assistant", text, reasoning))

    @property
    def last_role(self) -> str | None:
        return self.turns[-1].role if self.turns else None

    def last_reply(self) -> str | None:
        for turn in reversed(self.turns):
            if turn.role == "assistant":
                return turn.content
        return None

    def drop_last_reply(self) -> bool:
        """Remove the last reply so it can be regenerated; ``False`` when there is none."""
        if self.last_role != "assistant":
            return False
        self.turns.pop()
        return True

    def take_last_user(self) -> str | None:
        """Remove the last user message (and the reply after it) and return its text."""
        for index in range(len(self.turns) - 1, -1, -1):
            if self.turns[index].role == "user":
                text = self.turns[index].content
                del self.turns[index:]
                return text
        return None

    def clear(self) -> None:
        self.turns.clear()
        self.first_sent_turn = 0
