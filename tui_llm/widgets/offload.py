"""The offload control: current split, a pending value moved with single keys, load progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import ProgressBar, Static
from textual.worker import Worker, WorkerState

from tui_llm.catalog.metadata import human_bytes
from tui_llm.engine.protocol import KV_CACHE_TYPES
from tui_llm.messages import ApplyLoadSettings

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
    /* The bar keeps its row: showing it must not relayout the screen in the middle of a load. */
    OffloadPanel > ProgressBar { visibility: hidden; }
    OffloadPanel.-loading > ProgressBar { visibility: visible; }
    """

    total_layers: reactive[int] = reactive(0)
    current_layers: reactive[int] = reactive(0)
    pending_layers: reactive[int] = reactive(0)
    n_ctx: reactive[int] = reactive(4096)
    flash_attn: reactive[bool] = reactive(False)
    kv_cache_type: reactive[str] = reactive("f16")
    warning: reactive[str] = reactive("")
    status: reactive[str] = reactive("")

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "GPU offload · Ctrl+O"
        self.estimator: Estimator | None = None
        self.auto_level: Callable[[], tuple[int, str] | None] | None = None
        self._loaded = (0, 4096, False, "f16")
        self._estimate_args: tuple[int, int, bool, str] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", markup=False, classes="split")
        yield Static("", markup=False, classes="pending")
        yield Static("", markup=False, classes="estimate")
        yield Static("", markup=False, classes="settings")
        yield ProgressBar(total=1.0, show_eta=False, id="load-progress")
        yield Static("", markup=False, classes="warning")
        yield Static("", markup=False, classes="status")
        yield Static(
            "←/→ layer · [/] 10% · Home none · End all · a auto · c ctx · f flash · k KV · "
            "Enter apply",
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
        """Show llama.cpp's load progress (``None`` hides the bar)."""
        if not self.is_mounted or not self.children:
            return
        bar = self.query_one(ProgressBar)
        if progress is None:
            self.remove_class("-loading")
            return
        self.add_class("-loading")
        bar.update(progress=progress)

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
        split = self.query_one(".split", Static)
        pending = self.query_one(".pending", Static)
        estimate = self.query_one(".estimate", Static)
        if total == 0:
            split.update("No model loaded")
            pending.update("")
        else:
            split.update(f"GPU layers {self.current_layers} / {total}")
            bar = _bar(self.pending_layers, total, 20)
            marker = "  (press Enter to apply)" if self.dirty else ""
            pending.update(f"{bar} {self.pending_layers} / {total}{marker}")
        if self.estimator is not None and total:
            self._request_estimate()
        else:
            estimate.update("")
            estimate.display = False
        self.query_one(".settings", Static).update(
            f"ctx {self.n_ctx} · flash attn {'on' if self.flash_attn else 'off'} · "
            f"KV {self.kv_cache_type}"
        )
        self.query_one(".warning", Static).update(self.warning)
        self.query_one(".status", Static).update(self.status)
        for line in self.query(Static):
            if not line.has_class("hint") and not line.has_class("estimate"):
                line.display = bool(str(line.render()).strip())

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
        line = self.query_one(".estimate", Static)
        if est is None:
            line.update("")
        else:
            fits = "" if est.fits is None else (" · fits" if est.fits else " · may not fit")
            line.update(
                f"est. VRAM {human_bytes(est.gpu_bytes)} · RAM {human_bytes(est.cpu_bytes)}{fits}"
            )
        line.display = est is not None

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

    def action_apply(self) -> None:
        if not self.total_layers:
            return
        layers: int | str = (
            "all" if self.pending_layers >= self.total_layers else self.pending_layers
        )
        self.post_message(
            ApplyLoadSettings(layers, self.n_ctx, self.flash_attn, self.kv_cache_type)
        )


def _bar(value: int, total: int, width: int) -> str:
    filled = round(width * value / total) if total else 0
    return "█" * filled + "░" * (width - filled)
