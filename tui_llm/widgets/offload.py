"""The offload control: current split, a pending value moved with single keys, load progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import var
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from tui_llm.catalog.metadata import human_bytes
from tui_llm.engine.protocol import KV_CACHE_TYPES
from tui_llm.messages import ApplyLoadSettings
from tui_llm.widgets.textline import TextLine

CONTEXT_SIZES = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


@dataclass(frozen=True)
class LevelEstimate:
    """Estimated bytes on the GPU and on the CPU for one offload level."""

    gpu_bytes: int
    cpu_bytes: int
    fits: bool | None = None


Estimator = Callable[[int, int, bool, str], LevelEstimate | None]


class OffloadPanel(Vertical, can_focus=True):
    """Shows ``GPU layers 20 / 33`` and lets the user pick a new split, then apply it."""

    class SweepRequested(Message):
        """The user asks for the offload sweep of the loaded model (``b``)."""

    BINDINGS = [
        Binding("left,minus", "step(-1)", "−1 layer", show=False),
        Binding("right,plus,equals_sign", "step(1)", "+1 layer", show=False),
        Binding("pageup,left_square_bracket", "step_percent(-10)", "−10%", show=False),
        Binding("pagedown,right_square_bracket", "step_percent(10)", "+10%", show=False),
        Binding("home,n", "set_none", "None", show=False),
        Binding("end,l", "set_all", "All", show=False),
        Binding("a", "auto", "Auto"),
        Binding("c", "cycle_ctx", "Context", show=False),
        Binding("f", "toggle_flash", "Flash attn", show=False),
        Binding("k", "cycle_kv", "KV type", show=False),
        Binding("b", "sweep", "Sweep", show=False),
        Binding("enter", "apply", "Apply"),
        Binding("escape", "revert", "Revert", show=False),
    ]

    DEFAULT_CSS = """
    OffloadPanel {
        height: auto;
        border: round $primary 40%;
        padding: 0 1;
    }
    OffloadPanel:focus-within, OffloadPanel:focus { border: round $accent; }
    OffloadPanel { border-title-color: $text-muted; border-title-style: bold; }
    OffloadPanel > .split { text-style: bold; }
    OffloadPanel > .pending { color: $accent; }
    OffloadPanel > .warning { color: $warning; }
    OffloadPanel > .hint { color: $text-muted; }
    """

    total_layers: var[int] = var(0)
    current_layers: var[int] = var(0)
    pending_layers: var[int] = var(0)
    n_ctx: var[int] = var(4096)
    flash_attn: var[bool] = var(False)
    kv_cache_type: var[str] = var("f16")
    warning: var[str] = var("")
    status: var[str] = var("")

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "GPU offload · Ctrl+O"
        self.estimator: Estimator | None = None
        self.auto_level: Callable[[], tuple[int, str] | None] | None = None
        self._loaded = (0, 4096, False, "f16")
        self._estimate_args: tuple[int, int, bool, str] | None = None

    def compose(self) -> ComposeResult:
        yield TextLine(classes="split")
        yield TextLine(classes="pending")
        yield TextLine(classes="estimate")
        yield TextLine(classes="settings")
        # The load progress keeps its row, blank between loads: a load must not relayout the screen.
        yield TextLine(classes="progress", id="load-progress", hide_empty=False)
        yield TextLine(classes="warning")
        yield TextLine(classes="status")
        yield Static(
            "←/→ layer · [/] 10% · Home/End none/all · a auto · c ctx · f flash · k KV · "
            "Enter apply · b sweep",
            markup=False,
            classes="hint",
        )

    def on_mount(self) -> None:
        self.call_later(self.refresh_text)

    # ---- state from the app -----------------------------------------------------------------

    def set_loaded(
        self, offloaded: int, total: int, n_ctx: int, flash_attn: bool, kv_cache_type: str
    ) -> None:
        """What is loaded now; the pending value follows it."""
        self.total_layers = total
        self.current_layers = offloaded
        self.pending_layers = offloaded
        self.n_ctx = n_ctx
        self.flash_attn = flash_attn
        self.kv_cache_type = kv_cache_type
        self._loaded = (offloaded, n_ctx, flash_attn, kv_cache_type)
        self._estimate_args = None
        self.refresh_text()

    def set_model_shape(self, total: int, pending: int) -> None:
        """A model is chosen but not loaded yet."""
        self.total_layers = total
        self.pending_layers = min(pending, total)
        self.refresh_text()

    def show_progress(self, progress: float | None) -> None:
        """Show llama.cpp's load progress as a bar (``None`` blanks the row)."""
        if not self.is_mounted or not self.children:
            return
        line = self.query_one("#load-progress", TextLine)
        if progress is None:
            line.show("")
        else:
            line.show(progress_bar(progress, max(10, line.content_size.width or 40)))

    @property
    def dirty(self) -> bool:
        """Whether the pending settings differ from what is loaded."""
        return (self.pending_layers, self.n_ctx, self.flash_attn, self.kv_cache_type) != (
            self._loaded
        )

    # ---- rendering ----------------------------------------------------------------------------

    def watch_pending_layers(self) -> None:
        self.refresh_text()

    def watch_warning(self) -> None:
        self.refresh_text()

    def watch_status(self) -> None:
        self.refresh_text()

    def refresh_text(self) -> None:
        if not self.is_mounted:
            return
        total = self.total_layers
        if total == 0:
            self._line("split").show("No model loaded")
            self._line("pending").show("")
        else:
            self._line("split").show(f"GPU layers {self.current_layers} / {total}")
            bar = _bar(self.pending_layers, total, 20)
            marker = "  (press Enter to apply)" if self.dirty else ""
            self._line("pending").show(f"{bar} {self.pending_layers} / {total}{marker}")
        if self.estimator is not None and total:
            self._request_estimate()
        else:
            self._line("estimate").show("")
        self._line("settings").show(
            f"ctx {self.n_ctx} · flash attn {'on' if self.flash_attn else 'off'} · "
            f"KV {self.kv_cache_type}"
        )
        self._line("warning").show(self.warning)
        self._line("status").show(self.status)

    def _line(self, name: str) -> TextLine:
        return self.query_one(f".{name}", TextLine)

    def _request_estimate(self) -> None:
        """Estimate the pending settings in a thread (a new setting costs up to ~0.15 s)."""
        args = (self.pending_layers, self.n_ctx, self.flash_attn, self.kv_cache_type)
        estimator = self.estimator
        if estimator is None or args == self._estimate_args:
            return
        self._estimate_args = args

        def run() -> tuple[tuple[int, int, bool, str], LevelEstimate | None]:
            return args, estimator(*args)

        self.run_worker(run, thread=True, exclusive=True, group="estimate")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "estimate" or event.state != WorkerState.SUCCESS:
            return
        result: tuple[tuple[int, int, bool, str], LevelEstimate | None] | None = event.worker.result
        if result is None:
            return
        args, est = result
        if args != (self.pending_layers, self.n_ctx, self.flash_attn, self.kv_cache_type):
            return
        line = self._line("estimate")
        if est is None:
            line.show("")
        else:
            if est.fits is None and not est.gpu_bytes:  # no GPU: all of it is RAM
                line.show(f"est. RAM {human_bytes(est.cpu_bytes)}")
            else:
                fits = "" if est.fits is None else (" · fits" if est.fits else " · may not fit")
                line.show(
                    f"est. VRAM {human_bytes(est.gpu_bytes)} · RAM {human_bytes(est.cpu_bytes)}"
                    f"{fits}"
                )

    def invalidate_estimate(self) -> None:
        """Forget the shown estimate (a new model or new free memory)."""
        self._estimate_args = None
        self.refresh_text()

    # ---- actions ------------------------------------------------------------------------------

    def action_step(self, delta: int) -> None:
        if self.total_layers:
            self.pending_layers = max(0, min(self.total_layers, self.pending_layers + delta))

    def action_step_percent(self, percent: int) -> None:
        if self.total_layers:
            step = max(1, round(self.total_layers * abs(percent) / 100))
            self.action_step(step if percent > 0 else -step)

    def action_set_none(self) -> None:
        self.pending_layers = 0

    def action_set_all(self) -> None:
        self.pending_layers = self.total_layers

    def action_auto(self) -> None:
        if self.auto_level is None:
            self.status = "Auto needs the memory estimate"
            return
        choice = self.auto_level()
        if choice is None:
            self.status = "Auto: no estimate for this model"
            return
        level, reason = choice
        self.pending_layers = max(0, min(self.total_layers, level))
        self.status = f"Auto: {reason}"

    def action_cycle_ctx(self) -> None:
        larger = [size for size in CONTEXT_SIZES if size > self.n_ctx]
        self.n_ctx = larger[0] if larger else CONTEXT_SIZES[0]
        self.refresh_text()

    def action_toggle_flash(self) -> None:
        self.flash_attn = not self.flash_attn
        self.refresh_text()

    def action_cycle_kv(self) -> None:
        index = (
            KV_CACHE_TYPES.index(self.kv_cache_type) if self.kv_cache_type in KV_CACHE_TYPES else 0
        )
        self.kv_cache_type = KV_CACHE_TYPES[(index + 1) % len(KV_CACHE_TYPES)]
        self.refresh_text()

    def action_revert(self) -> None:
        self.pending_layers, self.n_ctx, self.flash_attn, self.kv_cache_type = self._loaded
        self.refresh_text()

    def action_sweep(self) -> None:
        self.post_message(self.SweepRequested())

    def action_apply(self) -> None:
        if not self.total_layers:
            return
        layers: int | str = (
            "all" if self.pending_layers >= self.total_layers else self.pending_layers
        )
        self.post_message(
            ApplyLoadSettings(layers, self.n_ctx, self.flash_attn, self.kv_cache_type)
        )


def progress_bar(progress: float, width: int) -> Content:
    """``━━━━━━━━━━━━━━━━━━━━━━━  45%`` in ``width`` cells: done in the accent colour."""
    share = min(1.0, max(0.0, progress))
    label = f" {share * 100:3.0f}%"
    cells = max(1, width - len(label))
    done = round(cells * share)
    return Content.assemble(
        ("━" * done, "$accent"), ("━" * (cells - done), "$foreground 20%"), label
    )


def _bar(value: int, total: int, width: int) -> str:
    filled = round(width * value / total) if total else 0
    return "█" * filled + "░" * (width - filled)
