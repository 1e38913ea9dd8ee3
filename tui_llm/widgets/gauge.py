"""The live GPU/VRAM gauge: NVML per GPU, llama.cpp's own devices, host RAM, engine memory."""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content

from tui_llm.catalog.metadata import human_bytes
from tui_llm.engine.logparse import totals_by_device
from tui_llm.engine.protocol import BufferSize, DeviceInfo, DeviceLayers
from tui_llm.placement import split_shares
from tui_llm.textsafe import make_inert
from tui_llm.widgets.textline import TextLine

_SPARK = "▁▂▃▄▅▆▇█"
HISTORY_SECONDS = 60

# Theme variables, resolved when the gauge is drawn: the bars follow the app's theme.
ENGINE_STYLE = "$accent"  # the engine's own VRAM: its bar cells and the "engine" line
USED_STYLE = "$primary"  # VRAM used by other processes; the sparkline of all VRAM used
FREE_STYLE = "dim"  # free VRAM: the text colour, faded


INDENT = "  "


def sparkline(values: list[float], maximum: float, width: int) -> str:
    """Unicode sparkline of the last ``width`` values scaled to ``maximum``."""
    if maximum <= 0:
        return ""
    tail = values[-width:]
    return "".join(_SPARK[min(7, max(0, int(v / maximum * 7.999)))] for v in tail)


def memory_bar(used: int, total: int, own: int, width: int) -> Content:
    """A bar of ``width`` cells for ``used``/``total`` bytes with the engine's ``own`` share
    drawn apart (in ``ENGINE_STYLE``); empty when ``total`` is unknown."""
    if total <= 0:
        return Content()
    own_cells = round(width * min(own, used) / total)
    used_cells = max(own_cells, round(width * used / total))
    return Content.assemble(
        ("█" * own_cells, ENGINE_STYLE),
        ("█" * (used_cells - own_cells), USED_STYLE),
        ("░" * (width - used_cells), FREE_STYLE),
    )


def _name(name: str) -> str:
    """A device name as reported, inert and on one line."""
    return make_inert(name, max_chars=100, one_line=True)


def _fmt(value: Any, unit: str, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}"


class GpuGauge(Vertical):
    """Per GPU: VRAM bar with the engine's share, utilization, temperature, power, sparkline."""

    DEFAULT_CSS = """
    GpuGauge { height: auto; border: round $primary 40%; padding: 0 1; }
    GpuGauge { border-title-color: $text-muted; border-title-style: bold; }
    GpuGauge > TextLine { height: auto; }
    GpuGauge > .reason { color: $text-muted; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "GPU / memory"
        self._history: dict[int, deque[float]] = {}
        self._snapshot: Any = None
        self._engine_pid: int | None = None
        self._devices: tuple[DeviceInfo, ...] = ()
        self._buffers: tuple[BufferSize, ...] = ()
        self._offloaded = 0
        self._layers: dict[str, int] = {}
        self._experts = ""
        self._tensor_split: tuple[float, ...] = ()
        self._reason = ""

    def compose(self) -> ComposeResult:
        yield TextLine(classes="gpus")
        yield TextLine(classes="reason")
        yield TextLine(classes="devices")
        yield TextLine(classes="experts")
        yield TextLine(classes="host")

    def set_unavailable(self, reason: str) -> None:
        """NVML is not there: say why in one line; llama.cpp's devices still show."""
        self._reason = reason
        self._redraw()

    def set_engine(
        self,
        pid: int | None,
        devices: tuple[DeviceInfo, ...],
        buffers: tuple[BufferSize, ...],
        offloaded_layers: int,
        layers_by_device: tuple[DeviceLayers, ...] = (),
        experts: str = "",
        tensor_split: tuple[float, ...] = (),
    ) -> None:
        """What the engine reported: its devices, where its buffers are, layers on each device;
        ``experts`` where a mixture-of-experts model's expert weights are (one line, "" for a
        dense model); ``tensor_split`` the split asked for between several devices."""
        self._engine_pid = pid
        self._devices = devices
        self._buffers = buffers
        self._offloaded = offloaded_layers
        self._layers = {entry.device: entry.layers for entry in layers_by_device}
        self._experts = experts
        self._tensor_split = tensor_split
        self._redraw()

    def set_devices(self, devices: tuple[DeviceInfo, ...]) -> None:
        self._devices = devices
        self._redraw()

    def update_snapshot(self, snapshot: Any, sample_interval_s: float = 1.0) -> None:
        """A new monitor sample; VRAM history feeds the sparkline."""
        self._snapshot = snapshot
        keep = max(2, int(HISTORY_SECONDS / max(sample_interval_s, 0.1)))
        for gpu in getattr(snapshot, "gpus", ()):
            history = self._history.setdefault(gpu.index, deque(maxlen=keep))
            if gpu.memory_used is not None:
                history.append(float(gpu.memory_used))
        self._redraw()

    def _redraw(self) -> None:
        if not self.is_mounted:
            return
        width = max(10, (self.size.width or 40) - 4)
        bar_width = max(8, min(40, width - 24))
        snapshot = self._snapshot
        parts: list[str | Content | tuple[str, str]] = []
        processes = getattr(snapshot, "processes", {}) or {}
        for gpu in getattr(snapshot, "gpus", ()):
            own = 0
            for proc in processes.get(gpu.index, ()):
                if proc.pid == self._engine_pid and proc.used_bytes:
                    own += proc.used_bytes
            # Device names come from the driver and from llama.cpp: shown as they are, made inert.
            parts.append((f"GPU{gpu.index} {_name(gpu.name)}\n", "bold"))
            used, total = gpu.memory_used or 0, gpu.memory_total or 0
            parts += [INDENT, memory_bar(used, total, own, bar_width)]
            parts.append(f" {human_bytes(used)} / {human_bytes(total)}\n")
            if own:
                parts.append((f"{INDENT}engine {human_bytes(own)}\n", ENGINE_STYLE))
            power = _fmt(gpu.power_w, " W")
            if getattr(gpu, "power_limit_w", None):
                power += f" / {gpu.power_limit_w:.0f} W"
            parts.append(
                f"{INDENT}util {_fmt(gpu.utilization_pct, '%')} · "
                f"{_fmt(gpu.temperature_c, '°C')} · {power}\n"
            )
            history = list(self._history.get(gpu.index, ()))
            if history and total:
                parts += [INDENT, (sparkline(history, float(total), bar_width), USED_STYLE), "\n"]
        self._set_line(".gpus", Content.assemble(*parts).rstrip())
        reason = self._reason or (getattr(snapshot, "error", None) or "")
        self._set_line(".reason", Text(make_inert(reason, max_chars=500)))
        devices = self._devices_text()
        devices.rstrip()
        self._set_line(".devices", devices)
        self._set_line(".experts", Text(self._experts))
        host = getattr(snapshot, "host", None)
        host_text = ""
        if host is not None:
            host_text = f"RAM {human_bytes(host.ram_used)} / {human_bytes(host.ram_total)}"
            if host.engine_rss is not None:
                host_text += f" · engine RSS {human_bytes(host.engine_rss)}"
        self._set_line(".host", Text(host_text))

    def _set_line(self, selector: str, text: Text | Content) -> None:
        """Update one part; an empty part takes no row."""
        self.query_one(selector, TextLine).show(text)

    def _devices_text(self) -> Text:
        text = Text()
        on_device = totals_by_device(self._buffers, self._devices)
        accelerators = [d for d in self._devices if d.kind != "cpu"]
        if not self._devices:
            return text
        text.append("llama.cpp devices\n", style="bold")
        shares = split_shares(self._tensor_split, len(accelerators))
        share_of = {dev.name: share for dev, share in zip(accelerators, shares, strict=True)}
        for dev in self._devices:
            # Two lines per device, whatever the figures: a row count that does not depend on
            # the number of digits keeps a new sample from relayouting the screen.
            name = _name(dev.name)
            if dev.description and dev.kind != "cpu":
                name += f" {_name(dev.description)}"
            layers = self._layers.get(dev.name)
            if layers is None and len(accelerators) == 1 and not self._layers:
                layers = self._offloaded  # a log without per-layer lines: all on the one device
            if dev.kind != "cpu" and layers:
                name += f" · {layers} layers"
            if len(accelerators) > 1 and self._tensor_split and dev.name in share_of:
                name += f" · split {share_of[dev.name] * 100:.0f}%"
            text.append(f"{INDENT}{name}\n")
            line = (
                f"{INDENT * 2}free {human_bytes(dev.memory_free)} / {human_bytes(dev.memory_total)}"
            )
            used_here = on_device.get(dev.name, 0)
            if used_here:
                line += f" · engine {human_bytes(used_here)}"
            text.append(line + "\n")
        return text
