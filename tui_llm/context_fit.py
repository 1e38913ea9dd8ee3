"""What of a conversation is sent when it outgrows the context: the rule the app and the CLI share.

The next turn fits when its prompt (system prompt and turns, rendered by the model's chat template
and counted by its tokenizer) leaves room for the reply: ``prompt_tokens + reply_reserve <= n_ctx``.
When it does not, ``context_overflow`` decides:

- ``"trim"`` keeps the system prompt and the newest turns that fit, cutting only before a user
  message so the kept turns start as a conversation does. A cut that still fits is kept (the
  prompt's start is then unchanged, so the engine's KV cache is reused); a cut that has to move
  leaves ``HEADROOM`` of the room free, so the next few turns do not move it again (each move
  re-evaluates the whole prompt). When even the last user message alone leaves no room for the
  full reserve, it is sent if the prompt fits at all, and the reply gets what is left.
- ``"stop"`` sends nothing and raises ``ContextOverflow``.

llama.cpp's own context shift is never relied on: llama-cpp-python's ``generate`` does not shift,
and the engine ends a reply that reaches ``n_ctx`` with the finish reason ``"context"``.

Tokens are counted by the engine (``EngineClient.count_tokens``), passed in here as ``count`` so
this module imports neither the engine process nor any UI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tui_llm.engine.protocol import ChatMessage

if TYPE_CHECKING:
    from tui_llm.engine.client import EngineClient

OverflowPolicy = Literal["trim", "stop"]
OVERFLOW_POLICIES: tuple[OverflowPolicy, ...] = ("trim", "stop")
HEADROOM = 0.25  # of the prompt's room left free when a cut moves

# messages -> (prompt tokens, n_ctx)
TokenCounter = Callable[[Sequence[ChatMessage]], Awaitable[tuple[int, int]]]


class ContextOverflow(Exception):
    """The next turn cannot be sent; ``str()`` is one line for the user.

    ``prompt_tokens`` is the prompt that did not fit (the whole conversation under ``"stop"``,
    the system prompt and last user message under ``"trim"``), ``n_ctx`` the context size.
    """

    def __init__(self, message: str, prompt_tokens: int, n_ctx: int) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


@dataclass(frozen=True)
class ContextPlan:
    """What to send for the next reply.

    ``first_turn`` indexes the conversation's turns: turns before it are not sent (0: all are).
    ``reply_room`` is the tokens left for the reply (at most ``n_ctx - prompt_tokens``).
    """

    messages: tuple[ChatMessage, ...]
    first_turn: int
    prompt_tokens: int
    n_ctx: int
    reply_room: int

    @property
    def trimmed(self) -> bool:
        return self.first_turn > 0


def engine_counter(engine: EngineClient) -> TokenCounter:
    """A ``TokenCounter`` that asks the engine (its loaded model's template and tokenizer)."""

    async def count(messages: Sequence[ChatMessage]) -> tuple[int, int]:
        event = await engine.count_tokens(tuple(messages))
        return event.prompt_tokens, event.n_ctx

    return count


def reply_reserve(max_tokens: int, n_ctx: int) -> int:
    """Tokens kept free for the reply: ``max_tokens``, at most half the context (a reply limit
    of 0 or less, "no limit", reserves a quarter); at least 1."""
    wanted = max_tokens if max_tokens > 0 else n_ctx // 4
    return max(1, min(wanted, n_ctx // 2))


def messages_from(
    system_prompt: str, turns: Sequence[ChatMessage], first_turn: int
) -> tuple[ChatMessage, ...]:
    """The system prompt (if any) and the turns from ``first_turn`` on."""
    head = (ChatMessage("system", system_prompt),) if system_prompt.strip() else ()
    return (*head, *turns[first_turn:])


async def plan_context(
    system_prompt: str,
    turns: Sequence[ChatMessage],
    count: TokenCounter,
    max_tokens: int,
    policy: OverflowPolicy,
    previous_first_turn: int = 0,
) -> ContextPlan:
    """Choose what to send (see the module docstring); raises ``ContextOverflow``, and whatever
    ``count`` raises (``EngineError``).

    ``previous_first_turn`` is the cut used for the last reply of this conversation (0: none).
    """
    first = max(0, min(previous_first_turn, _last_user(turns)))
    if first and policy == "stop":
        first = 0
    messages = messages_from(system_prompt, turns, first)
    prompt, n_ctx = await count(messages)
    reserve = reply_reserve(max_tokens, n_ctx)
    if prompt + reserve <= n_ctx:
        return ContextPlan(messages, first, prompt, n_ctx, n_ctx - prompt)
    if policy == "stop":
        raise ContextOverflow(
            f"The conversation is {prompt} tokens and its reply needs {reserve} more; the "
            f"context holds {n_ctx}",
            prompt,
            n_ctx,
        )
    cuts = [i for i, turn in enumerate(turns) if turn.role == "user" and i > first]
    if not cuts or cuts[-1] != _last_user(turns):
        cuts.append(max(_last_user(turns), first))
    budget = n_ctx - reserve
    target = int(budget * (1 - HEADROOM))
    chosen = await _smallest_cut(system_prompt, turns, count, cuts, target)
    if chosen is None:
        chosen = await _smallest_cut(system_prompt, turns, count, cuts, budget)
    if chosen is None:
        last = cuts[-1]
        messages = messages_from(system_prompt, turns, last)
        prompt, n_ctx = await count(messages)
        if prompt >= n_ctx:
            raise ContextOverflow(
                f"The last message and the system prompt are {prompt} tokens; the context "
                f"holds {n_ctx}",
                prompt,
                n_ctx,
            )
        return ContextPlan(messages, last, prompt, n_ctx, n_ctx - prompt)
    cut, prompt = chosen
    return ContextPlan(messages_from(system_prompt, turns, cut), cut, prompt, n_ctx, n_ctx - prompt)


async def _smallest_cut(
    system_prompt: str,
    turns: Sequence[ChatMessage],
    count: TokenCounter,
    cuts: list[int],
    limit: int,
) -> tuple[int, int] | None:
    """(cut, prompt tokens) for the earliest cut whose prompt is at most ``limit`` tokens, by
    binary search (fewer turns never take more tokens), or ``None``."""
    low, high = 0, len(cuts) - 1
    found: tuple[int, int] | None = None
    while low <= high:
        middle = (low + high) // 2
        tokens, _n_ctx = await count(messages_from(system_prompt, turns, cuts[middle]))
        if tokens <= limit:
            found = (cuts[middle], tokens)
            high = middle - 1
        else:
            low = middle + 1
    return found


def _last_user(turns: Sequence[ChatMessage]) -> int:
    """The index of the last user turn (0 when there is none)."""
    for index in range(len(turns) - 1, -1, -1):
        if turns[index].role == "user":
            return index
    return 0
