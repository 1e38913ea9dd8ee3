"""Cross-widget messages of the UI (typed dataclasses on Textual's message bus)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

from tui_llm.engine.protocol import OffloadValue, SplitMode

if TYPE_CHECKING:
    from tui_llm.catalog.discovery import FileId


@dataclass
class LoadModelRequested(Message):
    """The user picked a model to load (browser, picker, recent list)."""

    path: Path


@dataclass
class ApplyLoadSettings(Message):
    """The offload panel asks for a reload with new load settings: layers on the GPU, expert
    layers kept in RAM (``n_cpu_moe``, a count or "all"), the split between several devices
    (proportions in llama.cpp's device order, ``()`` by free memory), its mode and main GPU."""

    offload_layers: int | str
    n_ctx: int
    flash_attn: bool
    kv_cache_type: str
    n_cpu_moe: OffloadValue = 0
    tensor_split: tuple[float, ...] = ()
    split_mode: SplitMode = "layer"
    main_gpu: int = 0


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


@dataclass
class FitLabelsChanged(Message):
    """The browser's fit column was worked out again (the free GPU memory moved): the label of
    each model by its path."""

    labels: dict[str, str]


@dataclass
class ModelsScanned(Message):
    """A batch of local models found by the background scan; ``file_ids[i]`` is the file of
    ``models[i]`` (`catalog.discovery.file_id`), so a file reached twice is listed once;
    ``fit_labels`` the browser's fit column for them, worked out in the scan's thread."""

    models: list[object]
    done: bool
    file_ids: list[FileId]
    fit_labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelsOpened(Message):
    """Models opened from outside the scanned folders (the command line, the recent list, a
    later load), read in a thread like the scan's; ``file_ids`` and ``fit_labels`` as in
    `ModelsScanned`."""

    models: list[object]
    file_ids: list[FileId]
    fit_labels: dict[str, str] = field(default_factory=dict)
