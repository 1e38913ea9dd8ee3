"""Cross-widget messages of the UI (typed dataclasses on Textual's message bus)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message


@dataclass
class LoadModelRequested(Message):
    """The user picked a model to load (browser, picker, recent list)."""

    path: Path


@dataclass
class ApplyLoadSettings(Message):
    """The offload panel asks for a reload with new load settings."""

    offload_layers: int | str
    n_ctx: int
    flash_attn: bool
    kv_cache_type: str


@dataclass
class PromptSubmitted(Message):
    """The user sent a message from the prompt box."""

    text: str


@dataclass
class GpuSampled(Message):
    """A new GPU/host sample from the monitor thread; newer ones replace older, unhandled ones."""

    snapshot: object

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpuSampled)


class FitLabelsChanged(Message):
    """The browser's fit column was worked out again (the free GPU memory moved)."""


@dataclass
class ModelsScanned(Message):
    """A batch of local models found by the background scan."""

    models: list[object]
    done: bool
